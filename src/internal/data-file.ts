import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import type { z } from 'zod';
import { writeFileAtomic } from './atomic-write.ts';
import { isAbsent, KilnError } from './errors.ts';
import { oneLine } from './one-line.ts';

// Reading, validating and writing the TOML and JSON files kiln itself owns (its config, caches'
// state, lock files). Files inside untrusted trees (buildpack output, an image's root filesystem)
// are read through src/internal/safe-read.ts instead, which refuses links out of the tree.
//
// A missing file is ENOENT only; a file that cannot be read or parsed, or does not match its
// schema, is an error naming the file and the key: `config.toml: build.limits[0]: expected string`.

/** DataFileError is a file that could not be read or did not match its schema; `path` names it. */
export class DataFileError extends KilnError {
  readonly path: string;
  /** The file is the user's input (a config file, project.toml): a bad one is a usage error. */
  readonly userInput: boolean;
  constructor(path: string, message: string, options?: ErrorOptions & { readonly userInput?: boolean }) {
    super(`${path}: ${message}`, options);
    this.name = 'DataFileError';
    this.path = path;
    this.userInput = options?.userInput ?? false;
  }
}

/** Makes the error for a bad file (a caller may want its own subclass of DataFileError). */
export type FileErrorOf = (path: string, message: string, options?: ErrorOptions) => Error;

const dataFileError: FileErrorOf = (path, message, options) => new DataFileError(path, message, options);

/** formatKey renders a zod issue path as `a.b[0].c`. */
export function formatKey(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** validateData checks a decoded value against a schema; the error names `name` and the first bad key. */
export function validateData<S extends z.ZodType>(
  raw: unknown,
  schema: S,
  name: string,
  errorOf: FileErrorOf = dataFileError,
): z.output<S> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = formatKey(issue.path);
    throw errorOf(name, oneLine(`${key === '' ? '' : `${key}: `}${issue.message}`));
  }
  return result.data;
}

/** parseTomlData parses TOML text and validates it; `name` only names the file in errors. */
export function parseTomlData<S extends z.ZodType>(
  text: string,
  schema: S,
  name: string,
  errorOf: FileErrorOf = dataFileError,
): z.output<S> {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    const first = String((err as Error).message).split('\n')[0] ?? '';
    throw errorOf(name, `invalid TOML: ${oneLine(first)}`, { cause: err });
  }
  return validateData(raw, schema, name, errorOf);
}

/** parseJsonData parses JSON text and validates it; `name` only names the file in errors. */
export function parseJsonData<S extends z.ZodType>(
  text: string,
  schema: S,
  name: string,
  errorOf: FileErrorOf = dataFileError,
): z.output<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the start of the input: say where, not what.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    throw errorOf(name, `invalid JSON${at === undefined ? '' : ` (at byte ${at})`}`, { cause: err });
  }
  return validateData(raw, schema, name, errorOf);
}

/** The format of a data file, by its extension (`.json` is JSON, anything else TOML). */
function isJson(path: string): boolean {
  return extname(path) === '.json';
}

/**
 * readDataFileIfExists reads and validates a TOML or JSON file (by extension); undefined only
 * when it does not exist.
 */
export async function readDataFileIfExists<S extends z.ZodType>(
  path: string,
  schema: S,
  errorOf: FileErrorOf = dataFileError,
): Promise<z.output<S> | undefined> {
  const text = await readText(path, errorOf);
  if (typeof text !== 'string') return undefined;
  return isJson(path)
    ? parseJsonData(text, schema, path, errorOf)
    : parseTomlData(text, schema, path, errorOf);
}

/** readDataFile is readDataFileIfExists for a file that must exist. */
export async function readDataFile<S extends z.ZodType>(
  path: string,
  schema: S,
  errorOf: FileErrorOf = dataFileError,
): Promise<z.output<S>> {
  const text = await readText(path, errorOf);
  // The ENOENT stays the cause: callers tell "absent" from "broken" by it (isAbsent), never by text.
  if (typeof text !== 'string') throw errorOf(path, 'file not found', { cause: text });
  return isJson(path)
    ? parseJsonData(text, schema, path, errorOf)
    : parseTomlData(text, schema, path, errorOf);
}

/** readText reads a file's text; its ENOENT error when it is absent; any other failure is an error naming it. */
async function readText(path: string, errorOf: FileErrorOf): Promise<string | NodeJS.ErrnoException> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (isAbsent(err)) return err as NodeJS.ErrnoException;
    throw errorOf(path, `cannot read: ${(err as NodeJS.ErrnoException).code}`, { cause: err });
  }
}

/** stripUndefined drops undefined values so that TOML can encode the value. */
function stripUndefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripUndefined);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      // defineProperty, not assignment: a `__proto__` key from a file is data, not a prototype.
      Object.defineProperty(out, k, {
        value: stripUndefined(v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

/**
 * deepFreeze freezes a parsed value and everything in it: for a parse kept and handed to several
 * callers, none of which may change what the others see.
 */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** toTomlText encodes a value as TOML (undefined fields are left out). */
export function toTomlText(value: object): string {
  return stringifyToml(stripUndefined(value));
}

/** writeDataFile writes a value as TOML or JSON (by extension) atomically with an explicit mode. */
export async function writeDataFile(path: string, value: object, mode = 0o644): Promise<void> {
  await writeFileAtomic(path, isJson(path) ? `${JSON.stringify(value)}\n` : toTomlText(value), mode);
}
