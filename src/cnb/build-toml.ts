import { z } from 'zod';
import { readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

/** The schema of `<layers>/<bp>/build.toml`: entries the buildpack did not meet, and a legacy BOM. */
export const BuildToml = z
  .object({
    unmet: z.array(z.object({ name: z.string().min(1, 'unmet.name is required') }).loose()).optional(),
    bom: z.array(z.unknown()).optional(),
  })
  .loose();
export type BuildToml = z.output<typeof BuildToml>;

/** readBuildToml reads build.toml; an absent file reads as empty. */
export async function readBuildToml(path: TomlSource): Promise<BuildToml> {
  return (await readTomlFileIfExists(path, BuildToml)) ?? {};
}

/** writeBuildToml writes build.toml atomically. */
export function writeBuildToml(path: string, value: BuildToml): Promise<void> {
  return writeTomlFile(path, value);
}
