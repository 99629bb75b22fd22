import type { z } from 'zod';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import {
  DataFileError,
  type FileErrorOf,
  formatKey,
  parseTomlData,
  readDataFile,
  readDataFileIfExists,
  toTomlText,
  validateData,
} from '../internal/data-file.ts';
import { type InRootFile, readTextInRootIfExists, shownPath } from '../internal/safe-read.ts';

/**
 * TomlSource is where a spec file is read from: a host path kiln itself owns, or a file inside an
 * untrusted tree (buildpack output, a builder's root filesystem), read through internal/safe-read
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
export class CnbFileError extends DataFileError {
  constructor(path: string, message: string, options?: ErrorOptions & { readonly userInput?: boolean }) {
    super(path, message, options);
    this.name = 'CnbFileError';
  }
}

const cnbFileError: FileErrorOf = (path, message, options) => new CnbFileError(path, message, options);

export { formatKey, toTomlText };

/**
 * parseTomlText parses TOML text and validates it against a zod schema; `path` is only used to
 * name the file in errors.
 */
export function parseTomlText<S extends z.ZodType>(text: string, schema: S, path: string): z.output<S> {
  return parseTomlData(text, schema, path, cnbFileError);
}

/** validate checks an already-decoded value against a schema, naming the key in the error. */
export function validate<S extends z.ZodType>(raw: unknown, schema: S, path: string): z.output<S> {
  return validateData(raw, schema, path, cnbFileError);
}

/** readTomlFile reads and validates a TOML file; a missing file is an error naming it. */
export async function readTomlFile<S extends z.ZodType>(path: TomlSource, schema: S): Promise<z.output<S>> {
  if (typeof path !== 'string') {
    const text = readTextInRootIfExists(path.root, path.rel, path);
    if (text === undefined) throw new CnbFileError(nameOf(path), 'file not found');
    return parseTomlText(text, schema, nameOf(path));
  }
  return readDataFile(path, schema, cnbFileError);
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
  return readDataFileIfExists(path, schema, cnbFileError);
}

/**
 * writeTomlFile writes a value as TOML atomically: a temp file in the same directory, then a
 * rename, so readers never see half a file.
 */
export async function writeTomlFile(path: string, value: object, mode = 0o644): Promise<void> {
  await writeFileAtomic(path, toTomlText(value), mode);
}
