import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'smol-toml';
import type { z } from 'zod';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { type InRootFile, readTextInRootIfExists, shownPath } from '../layers/safe-read.ts';
import { ExitCode, KilnError } from './exit-codes.ts';

/**
 * TomlSource is where a spec file is read from: a host path kiln itself owns, or a file inside an
 * untrusted tree (buildpack output, a builder's root filesystem), read through layers/safe-read
 * so that a link out of the tree is refused, never followed.
 */
export type TomlSource = string | InRootFile;

/** nameOf is how errors name a TomlSource. */
export function nameOf(src: TomlSource): string {
  return typeof src === 'string' ? src : shownPath(src);
}

/**
 * CnbFileError is a spec file that could not be read or did not match its schema. The message
 * names the file and the offending key, e.g. `layers/a/launch.toml: processes[0].command: expected array`.
 */
export class CnbFileError extends KilnError {
  readonly path: string;
  constructor(path: string, message: string, exitCode: number = ExitCode.Failed, options?: ErrorOptions) {
    super(`${path}: ${message}`, exitCode, options);
    this.name = 'CnbFileError';
    this.path = path;
  }
}

/** formatKey renders a zod issue path as `a.b[0].c`. */
export function formatKey(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/**
 * parseTomlText parses TOML text and validates it against a zod schema; `path` is only used to
 * name the file in errors.
 */
export function parseTomlText<S extends z.ZodType>(text: string, schema: S, path: string): z.output<S> {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    const first = String((err as Error).message).split('\n')[0];
    throw new CnbFileError(path, `invalid TOML: ${first}`, ExitCode.Failed, { cause: err });
  }
  return validate(raw, schema, path);
}

/** validate checks an already-decoded value against a schema, naming the key in the error. */
export function validate<S extends z.ZodType>(raw: unknown, schema: S, path: string): z.output<S> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = formatKey(issue.path);
    throw new CnbFileError(path, `${key === '' ? '' : `${key}: `}${issue.message}`);
  }
  return result.data;
}

/** readTomlFile reads and validates a TOML file; a missing file is an error naming it. */
export async function readTomlFile<S extends z.ZodType>(path: TomlSource, schema: S): Promise<z.output<S>> {
  if (typeof path !== 'string') {
    const text = readTextInRootIfExists(path.root, path.rel, path);
    if (text === undefined)
      throw new CnbFileError(nameOf(path), 'file not found', path.exitCode ?? ExitCode.Failed);
    return parseTomlText(text, schema, nameOf(path));
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CnbFileError(
      path,
      code === 'ENOENT' ? 'file not found' : `cannot read: ${code}`,
      ExitCode.Failed,
      {
        cause: err,
      },
    );
  }
  return parseTomlText(text, schema, path);
}

/** readTomlFileIfExists is readTomlFile that returns undefined when the file does not exist. */
export async function readTomlFileIfExists<S extends z.ZodType>(
  path: TomlSource,
  schema: S,
): Promise<z.output<S> | undefined> {
  if (typeof path !== 'string') {
    const text = readTextInRootIfExists(path.root, path.rel, path);
    return text === undefined ? undefined : parseTomlText(text, schema, nameOf(path));
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CnbFileError(path, `cannot read: ${(err as NodeJS.ErrnoException).code}`, ExitCode.Failed, {
      cause: err,
    });
  }
  return parseTomlText(text, schema, path);
}

/** stripUndefined drops undefined values (and empty optional tables) so that TOML can encode the value. */
function stripUndefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripUndefined);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      out[k] = stripUndefined(v);
    }
    return out;
  }
  return value;
}

/** toTomlText encodes a value as TOML (undefined fields are left out). */
export function toTomlText(value: object): string {
  return stringify(stripUndefined(value));
}

/**
 * writeTomlFile writes a value as TOML atomically: a temp file in the same directory, then a
 * rename, so readers never see half a file.
 */
export async function writeTomlFile(path: string, value: object, mode = 0o644): Promise<void> {
  await writeFileAtomic(path, toTomlText(value), mode);
}
