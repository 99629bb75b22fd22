import { z } from 'zod';
import { readTomlFile, readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

/** The schema of run.toml (`/cnb/run.toml`): run images and their mirrors. */
export const RunToml = z
  .object({
    images: z
      .array(z.object({ image: z.string().min(1), mirrors: z.array(z.string()).optional() }).loose())
      .default([]),
  })
  .loose();
export type RunToml = z.output<typeof RunToml>;

/** readRunToml reads run.toml. */
export function readRunToml(path: TomlSource): Promise<RunToml> {
  return readTomlFile(path, RunToml);
}

/** readRunTomlIfExists reads run.toml; undefined only when it does not exist. */
export function readRunTomlIfExists(path: TomlSource): Promise<RunToml | undefined> {
  return readTomlFileIfExists(path, RunToml);
}

/** writeRunToml writes run.toml atomically. */
export function writeRunToml(path: string, value: RunToml): Promise<void> {
  return writeTomlFile(path, value);
}
