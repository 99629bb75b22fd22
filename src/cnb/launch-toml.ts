import { z } from 'zod';
import type { ApiVersion } from './api.ts';
import { CnbFileError, nameOf, readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

const ProcessType = z
  .string()
  .regex(/^[A-Za-z0-9._-]+$/, 'process type may only contain letters, digits, ".", "_" and "-"');

const ProcessEntry = z
  .object({
    type: ProcessType,
    command: z.union([z.string(), z.array(z.string()).min(1, 'command must not be empty')]),
    args: z.array(z.string()).optional(),
    direct: z.boolean().optional(),
    default: z.boolean().optional(),
    'working-dir': z.string().optional(),
    'exec-env': z.array(z.string()).optional(),
  })
  .loose();

/** The schema of `<layers>/<bp>/launch.toml` before API-specific checks. */
export const LaunchToml = z
  .object({
    labels: z.array(z.object({ key: z.string(), value: z.string() }).loose()).optional(),
    processes: z.array(ProcessEntry).optional(),
    slices: z.array(z.object({ paths: z.array(z.string()).default([]) }).loose()).optional(),
    bom: z.array(z.unknown()).optional(),
  })
  .loose();
export type LaunchTomlFile = z.output<typeof LaunchToml>;

/** Process is a launch.toml process normalized for the platform (command always an array). */
export interface Process {
  readonly type: string;
  readonly command: readonly string[];
  readonly args: readonly string[];
  readonly direct: boolean;
  readonly default: boolean;
  readonly workingDir?: string;
  readonly execEnv?: readonly string[];
}

/** LaunchToml is a decoded, API-checked launch.toml. */
export interface LaunchTomlData {
  readonly labels: readonly { readonly key: string; readonly value: string }[];
  readonly processes: readonly Process[];
  readonly slices: readonly { readonly paths: readonly string[] }[];
  readonly bom: readonly unknown[];
  /** Things the API version makes kiln ignore, for the caller to log. */
  readonly warnings: readonly string[];
}

/**
 * readLaunchToml reads launch.toml the way the given buildpack API defines it: before 0.9 the
 * command is a string and `direct` defaults to false; from 0.9 it is an array and `direct` is an
 * error. More than one default process is an error. Returns undefined when the file is absent.
 */
export async function readLaunchToml(path: TomlSource, api: ApiVersion): Promise<LaunchTomlData | undefined> {
  const raw = await readTomlFileIfExists(path, LaunchToml);
  if (!raw) return undefined;
  const processes: Process[] = [];
  let defaultType: string | undefined;
  const warnings: string[] = [];
  for (const [i, p] of (raw.processes ?? []).entries()) {
    if (p['working-dir'] !== undefined && api.lessThan('0.8')) {
      warnings.push(
        `process working directory isn't supported in buildpack API ${api}: ignoring it for process '${p.type}'`,
      );
    }
    let command: string[];
    let direct: boolean;
    if (api.lessThan('0.9')) {
      if (typeof p.command !== 'string') {
        throw new CnbFileError(
          nameOf(path),
          `processes[${i}].command: must be a string for buildpack API ${api}`,
        );
      }
      command = [p.command];
      direct = p.direct ?? false;
    } else {
      if (p.direct !== undefined) {
        throw new CnbFileError(
          nameOf(path),
          `processes[${i}].direct: not supported for buildpack API ${api}`,
        );
      }
      if (typeof p.command === 'string') {
        throw new CnbFileError(
          nameOf(path),
          `processes[${i}].command: must be an array for buildpack API ${api}`,
        );
      }
      command = p.command;
      direct = true;
    }
    if (p.default) {
      if (defaultType !== undefined) {
        throw new CnbFileError(
          nameOf(path),
          `processes[${i}].default: multiple default process types aren't allowed`,
        );
      }
      defaultType = p.type;
    }
    processes.push({
      type: p.type,
      command,
      args: p.args ?? [],
      direct,
      default: p.default ?? false,
      // working-dir arrived with API 0.8; the lifecycle ignores it before, with a warning.
      workingDir: api.atLeast('0.8') ? p['working-dir'] : undefined,
      execEnv: api.atLeast('0.12') ? p['exec-env'] : undefined,
    });
  }
  return {
    labels: raw.labels ?? [],
    processes,
    slices: (raw.slices ?? []).map((s) => ({ paths: s.paths })),
    bom: raw.bom ?? [],
    warnings,
  };
}

/** writeLaunchToml writes launch.toml (used by tests and kiln's own buildpacks). */
export function writeLaunchToml(path: string, value: LaunchTomlFile): Promise<void> {
  return writeTomlFile(path, value);
}
