import { z } from 'zod';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

const Distro = z.object({ name: z.string().optional(), version: z.string().optional() }).loose();

/**
 * A run-image target. The reference lifecycle writes the variant as `arch-variant`; `variant` is
 * accepted when reading.
 */
export const TargetMetadata = z
  .object({
    os: z.string().optional(),
    arch: z.string().optional(),
    'arch-variant': z.string().optional(),
    variant: z.string().optional(),
    id: z.string().optional(),
    distro: Distro.optional(),
  })
  .loose();
export type TargetMetadata = z.output<typeof TargetMetadata>;

/** The schema of `<layers>/analyzed.toml`. `[metadata]` is the previous image's lifecycle label. */
export const AnalyzedToml = z
  .object({
    image: z.object({ reference: z.string() }).loose().optional(),
    'previous-image': z.object({ reference: z.string() }).loose().optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
    'run-image': z
      .object({
        image: z.string().optional(),
        reference: z.string().optional(),
        extend: z.boolean().optional(),
        target: TargetMetadata.optional(),
      })
      .loose()
      .optional(),
    'build-image': z.object({ reference: z.string() }).loose().optional(),
  })
  .loose();
export type AnalyzedToml = z.output<typeof AnalyzedToml>;

/** readAnalyzedToml reads analyzed.toml. */
export function readAnalyzedToml(path: TomlSource): Promise<AnalyzedToml> {
  return readTomlFile(path, AnalyzedToml);
}

/** writeAnalyzedToml writes analyzed.toml atomically. */
export function writeAnalyzedToml(path: string, value: AnalyzedToml): Promise<void> {
  return writeTomlFile(path, value);
}
