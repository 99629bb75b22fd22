import { z } from 'zod';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

/** The schema of report.toml, written by the exporter. `manifest-size` is an integer as in the lifecycle. */
export const ReportToml = z
  .object({
    image: z
      .object({
        tags: z.array(z.string()).default([]),
        digest: z.string().optional(),
        'image-id': z.string().optional(),
        'manifest-size': z.number().int().optional(),
      })
      .loose(),
    build: z
      .object({ bom: z.array(z.unknown()).optional() })
      .loose()
      .optional(),
  })
  .loose();
export type ReportToml = z.output<typeof ReportToml>;

/** readReportToml reads report.toml. */
export function readReportToml(path: TomlSource): Promise<ReportToml> {
  return readTomlFile(path, ReportToml);
}

/** writeReportToml writes report.toml atomically. */
export function writeReportToml(path: string, value: ReportToml): Promise<void> {
  return writeTomlFile(path, value);
}
