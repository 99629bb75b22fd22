/** The bench's command-line arguments (after `node bench/<name>.ts`). */
export const args: readonly string[] = process.argv.slice(2);

/** opt returns the value following `name` on the command line (`--rounds 3`), or `def`. */
export function opt(name: string, def: string): string {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : def;
}
