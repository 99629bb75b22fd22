import { z } from 'zod';
import { readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

/** The schema of `<layers>/<bp>/store.toml`: free-form metadata carried between builds. */
export const StoreToml = z.object({ metadata: z.record(z.string(), z.unknown()).optional() }).loose();
export type StoreToml = z.output<typeof StoreToml>;

/** readStoreToml reads store.toml; absent reads as undefined. */
export function readStoreToml(path: TomlSource): Promise<StoreToml | undefined> {
  return readTomlFileIfExists(path, StoreToml);
}

/** writeStoreToml writes store.toml atomically (the restorer does this). */
export function writeStoreToml(path: string, value: StoreToml): Promise<void> {
  return writeTomlFile(path, value);
}
