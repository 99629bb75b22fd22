import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../internal/errors.ts';
import type { Redactor } from '../internal/redactor.ts';

// Service bindings (CNB platform spec `<platform>/bindings/<name>/`, and the Kubernetes
// service-binding convention): a directory holding a `type` file, an optional `provider` file and
// one file per secret entry. kiln copies each binding into the build's platform directory (see
// platform-dir.ts), which only detect and build see, read-only. Binding content never goes to a
// layer, the cache, the image config or a log line: its values are registered with the Redactor.

/** Binding names: one path component, not hidden. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
/**
 * Entry names: Kubernetes secret keys (`[-._a-zA-Z0-9]+`), so `.npmrc` and `.dockerconfigjson`
 * are fine; `.` and `..` are not, and `..`-prefixed names are Kubernetes' own (skipped).
 */
const ENTRY = /^[A-Za-z0-9._-]+$/;
/** A binding is for credentials and certificates: a few KiB. The caps stop `--binding x=/` mistakes. */
const MAX_ENTRY_BYTES = 1 << 20;
const MAX_BINDING_BYTES = 16 << 20;
/** Entries whose values are metadata, not secrets. */
const METADATA_ENTRIES = ['type', 'provider'];

/** One file of a binding. */
export interface BindingEntry {
  readonly name: string;
  readonly content: Buffer;
}

/** A service binding to give to buildpacks. `entries` include `type` (and `provider`) files. */
export interface Binding {
  readonly name: string;
  readonly type: string;
  readonly provider: string | undefined;
  readonly entries: readonly BindingEntry[];
}

/** parseBindingFlag splits `--binding NAME=DIR`; DIR is resolved against `cwd`. */
export function parseBindingFlag(flag: string, cwd: string): { name: string; dir: string } {
  const eq = flag.indexOf('=');
  if (eq <= 0 || eq === flag.length - 1) throw new UsageError(`--binding "${flag}": expected NAME=DIR`);
  const name = flag.slice(0, eq);
  checkName(name, `--binding "${flag}": binding name "${name}"`);
  return { name, dir: path.resolve(cwd, flag.slice(eq + 1)) };
}

function checkName(name: string, what: string): void {
  if (!NAME.test(name) || name.length > 253)
    throw new UsageError(`${what}: expected letters, digits, ".", "_" and "-" (not starting with ".")`);
}

function checkEntry(name: string, what: string): void {
  if (!ENTRY.test(name) || name.startsWith('..') || name === '.' || name.length > 253)
    throw new UsageError(`${what}: expected letters, digits, ".", "_" and "-" (not "." or "..")`);
}

/**
 * readBindingDir reads and validates a binding directory: a non-empty `type` file is required,
 * every entry must be a file (or a symlink to one, as Kubernetes projects secrets) with a safe
 * name. Kubernetes' own `..data`-style entries are skipped.
 */
export async function readBindingDir(name: string, dir: string): Promise<Binding> {
  checkName(name, `binding "${name}"`);
  const what = `binding "${name}" (${dir})`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `${what}: ${code === 'ENOENT' ? 'directory does not exist' : code === 'ENOTDIR' ? 'is not a directory' : `cannot read (${code})`}`,
      { cause: err },
    );
  }
  const entries: BindingEntry[] = [];
  let total = 0;
  for (const entry of names.sort()) {
    if (entry.startsWith('..')) continue; // Kubernetes' atomic-writer internals
    checkEntry(entry, `${what}: entry "${entry}"`);
    const file = path.join(dir, entry);
    const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`${what}: entry "${entry}" cannot be read (${err.code})`);
    });
    if (!st.isFile()) throw new UsageError(`${what}: entry "${entry}" is not a file`);
    if (st.size > MAX_ENTRY_BYTES) throw new UsageError(`${what}: entry "${entry}" is larger than 1 MiB`);
    total += st.size;
    if (total > MAX_BINDING_BYTES) throw new UsageError(`${what}: more than 16 MiB of entries`);
    entries.push({ name: entry, content: await readFile(file) });
  }
  return makeBinding(name, entries, what);
}

/**
 * bindingOf builds a binding from values (for bindings kiln generates, such as ca-certificates).
 * `type` and `provider` become entries as the convention wants.
 */
export function bindingOf(
  name: string,
  type: string,
  entries: Readonly<Record<string, string | Buffer>>,
  provider?: string,
): Binding {
  checkName(name, `binding "${name}"`);
  const list: BindingEntry[] = [{ name: 'type', content: Buffer.from(type) }];
  if (provider !== undefined) list.push({ name: 'provider', content: Buffer.from(provider) });
  for (const [k, v] of Object.entries(entries)) {
    checkEntry(k, `binding "${name}": entry "${k}"`);
    if (METADATA_ENTRIES.includes(k)) throw new TypeError(`bindingOf: entry name "${k}" is reserved`);
    list.push({ name: k, content: Buffer.isBuffer(v) ? v : Buffer.from(v) });
  }
  list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return makeBinding(name, list, `binding "${name}"`);
}

function makeBinding(name: string, entries: BindingEntry[], what: string): Binding {
  const type = entries
    .find((e) => e.name === 'type')
    ?.content.toString('utf8')
    .trim();
  if (!type) throw new UsageError(`${what}: needs a non-empty "type" file`);
  const provider =
    entries
      .find((e) => e.name === 'provider')
      ?.content.toString('utf8')
      .trim() || undefined;
  return { name, type, provider, entries };
}

/** registerBindingSecrets gives every secret entry of a binding (all but type/provider) to the redactor. */
export function registerBindingSecrets(binding: Binding, redactor: Redactor): void {
  for (const e of binding.entries) {
    if (METADATA_ENTRIES.includes(e.name)) continue;
    const text = e.content.toString('utf8');
    redactor.add(text);
    for (const f of secretFragments(text)) redactor.add(f);
  }
}

/** checkUniqueNames refuses two bindings of one name (they would share a directory). */
export function checkUniqueNames(bindings: readonly Binding[]): void {
  const seen = new Set<string>();
  for (const b of bindings) {
    if (seen.has(b.name)) throw new UsageError(`binding "${b.name}" is given twice`);
    seen.add(b.name);
  }
}

/**
 * secretFragments finds values inside structured secret files, which logs may show alone: the
 * value of each `key=value` line (npmrc, .env, properties) and of each `"key": "value"` pair
 * (docker config.json, JSON credentials). Only values of 8 characters or more: shorter ones are
 * more likely flags than secrets.
 */
export function secretFragments(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const kv = /^[^=#;\s][^=]*=\s*(.+?)\s*$/.exec(line);
    if (kv) out.add(kv[1]!.replace(/^(["'])(.*)\1$/, '$2'));
  }
  for (const m of text.matchAll(/"[^"\\]*"\s*:\s*"((?:[^"\\]|\\.)*)"/g)) out.add(m[1]!);
  return [...out].filter((v) => v.length >= 8);
}
