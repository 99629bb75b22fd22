import { parse, stringify } from 'smol-toml';
import { readTextIfExists, writeFileAtomic } from './fsutil.ts';

/** readToml parses a TOML file, or returns undefined when it does not exist. */
export async function readToml(path: string): Promise<Record<string, unknown> | undefined> {
  const text = await readTextIfExists(path);
  if (text === undefined) return undefined;
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${path}: not valid TOML: ${String((err as Error).message).split('\n')[0]}`);
  }
}

/** writeToml writes a TOML document atomically. */
export async function writeToml(path: string, value: Record<string, unknown>): Promise<void> {
  await writeFileAtomic(path, `${stringify(value)}\n`);
}
