import { z } from 'zod';
import { readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

/** The schema of project-metadata.toml: free-form source information. */
export const ProjectMetadataToml = z
  .object({
    source: z
      .object({
        type: z.string().optional(),
        version: z.record(z.string(), z.unknown()).optional(),
        metadata: z.record(z.string(), z.unknown()).optional(),
      })
      .loose()
      .optional(),
  })
  .loose();
export type ProjectMetadataToml = z.output<typeof ProjectMetadataToml>;

/** readProjectMetadataToml reads project-metadata.toml; absent reads as undefined. */
export function readProjectMetadataToml(path: TomlSource): Promise<ProjectMetadataToml | undefined> {
  return readTomlFileIfExists(path, ProjectMetadataToml);
}

/** writeProjectMetadataToml writes project-metadata.toml atomically. */
export function writeProjectMetadataToml(path: string, value: ProjectMetadataToml): Promise<void> {
  return writeTomlFile(path, value);
}
