import { z } from 'zod';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

/**
 * `<layers>/config/metadata.toml`, written by the build phase and consumed by the exporter and
 * the launcher. TOML shape (Platform API 0.15):
 *
 * ```toml
 * buildpack-default-process-type = "web"          # absent when no buildpack set a default
 * [[buildpacks]]  id version api homepage?        # the group, in order
 * [[processes]]   type command=[..] args=[..] direct working-dir? exec-env? buildpack-id
 * [[slices]]      paths=[..]                      # in buildpack order
 * [[labels]]      key value                       # in buildpack order; later ones win when applied
 * [[bom]]         (legacy, always empty: legacy BOMs go to <layers>/sbom/*\/sbom.legacy.json)
 * ```
 *
 * Processes are sorted by type (reproducible labels); `default` is never written: the default is
 * `buildpack-default-process-type`.
 */
export const BuildpackRef = z
  .object({
    id: z.string(),
    version: z.string(),
    api: z.string(),
    homepage: z.string().optional(),
    optional: z.boolean().optional(),
  })
  .loose();
export type BuildpackRef = z.output<typeof BuildpackRef>;

/** A process as metadata.toml stores it. */
export const MetadataProcess = z
  .object({
    type: z.string(),
    command: z.array(z.string()),
    args: z.array(z.string()).default([]),
    direct: z.boolean().default(true),
    'working-dir': z.string().optional(),
    'exec-env': z.array(z.string()).optional(),
    'buildpack-id': z.string(),
  })
  .loose();
export type MetadataProcess = z.output<typeof MetadataProcess>;

/** The schema of `<layers>/config/metadata.toml`. */
export const MetadataToml = z
  .object({
    'buildpack-default-process-type': z.string().optional(),
    buildpacks: z.array(BuildpackRef).default([]),
    extensions: z.array(BuildpackRef).optional(),
    processes: z.array(MetadataProcess).default([]),
    slices: z.array(z.object({ paths: z.array(z.string()).default([]) }).loose()).default([]),
    labels: z.array(z.object({ key: z.string(), value: z.string() }).loose()).default([]),
    bom: z.array(z.unknown()).default([]),
  })
  .loose();

/** BuildMetadata is the decoded metadata.toml, the build phase's output for the exporter. */
export type BuildMetadata = z.output<typeof MetadataToml>;

/** readMetadataToml reads `<layers>/config/metadata.toml`. */
export function readMetadataToml(path: TomlSource): Promise<BuildMetadata> {
  return readTomlFile(path, MetadataToml);
}

/** writeMetadataToml writes metadata.toml atomically. Empty optional arrays are left out. */
export function writeMetadataToml(path: string, value: BuildMetadata): Promise<void> {
  const out: Record<string, unknown> = {};
  if (value['buildpack-default-process-type']) {
    out['buildpack-default-process-type'] = value['buildpack-default-process-type'];
  }
  out.buildpacks = value.buildpacks;
  if (value.extensions?.length) out.extensions = value.extensions;
  if (value.processes.length) out.processes = value.processes;
  if (value.slices.length) out.slices = value.slices;
  if (value.labels.length) out.labels = value.labels;
  if (value.bom.length) out.bom = value.bom;
  return writeTomlFile(path, out);
}
