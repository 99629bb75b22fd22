/**
 * The launcher's input file, `<layers>/config/kiln-launch` (format: README.md in this folder).
 * The exporter writes it from metadata.toml's processes and buildpacks, so the static C launcher
 * never parses TOML: it reads NUL-terminated fields. It lives in `<layers>/config`, so it ships in
 * the image's config layer next to metadata.toml.
 */
import path from 'node:path';
import { ApiVersion } from '../cnb/api.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { KilnError } from '../internal/errors.ts';

/** The first field of the file; bump the number on incompatible changes (the launcher checks it). */
export const LAUNCH_FILE_MAGIC = 'kiln-launch 2';
/** Path of the file relative to the layers directory. */
export const LAUNCH_FILE = 'config/kiln-launch';

/** A buildpack of the group, in group order (the launcher applies their layers in this order). */
export interface LaunchBuildpack {
  readonly id: string;
  readonly api: string;
}

/** A process as metadata.toml lists it (Platform API >= 0.10: command is an array). */
export interface LaunchProcess {
  readonly type: string;
  readonly command: readonly string[];
  readonly args: readonly string[];
  readonly buildpackId: string;
  readonly workingDir?: string;
  /** Execution environments the process is for (Buildpack API 0.12); empty or absent: all. */
  readonly execEnv?: readonly string[];
  /**
   * `direct = false` (Buildpack API < 0.9 only): the launcher runs the command through a shell,
   * sourcing profile.d scripts and `<app>/.profile` first. Absent: true.
   */
  readonly direct?: boolean;
}

/**
 * The shells the launcher runs a `direct = false` process with, in order: bash (the reference
 * launcher's, which profile.d scripts are written for), else a POSIX sh. A run image needs one of
 * them for such a process (the export's launch check fails the build without it: src/lifecycle/launch-check.ts).
 */
export const LAUNCH_SHELLS: readonly string[] = ['/bin/bash', '/bin/sh'];

/**
 * processNeedsShell is the "needs a shell" property of a process as metadata.toml (and the
 * `io.buildpacks.build.metadata` label) records it: `direct = false` processes run through a
 * shell (one of LAUNCH_SHELLS) at launch; every other process is exec'd directly.
 */
export function processNeedsShell(p: { readonly direct?: boolean }): boolean {
  return p.direct === false;
}

/** Everything the launcher needs to choose and start a process. */
export interface LaunchConfig {
  readonly buildpacks: readonly LaunchBuildpack[];
  readonly processes: readonly LaunchProcess[];
  /** The default process type (`buildpack-default-process-type`), if any. */
  readonly defaultProcessType?: string;
}

function field(name: string, value: string): string {
  if (value.includes('\0')) throw new KilnError(`launch config: ${name} contains a NUL byte`);
  return `${value}\0`;
}

/**
 * encodeLaunchConfig serialises `cfg` to the launcher's NUL-separated format. Whether user
 * arguments replace or extend a single-entry command's args is decided here, from the API of the
 * buildpack that declared the process (Buildpack API < 0.9: appended; later: replaced).
 */
export function encodeLaunchConfig(cfg: LaunchConfig): Buffer {
  const apis = new Map(cfg.buildpacks.map((b) => [b.id, b.api]));
  let out = field('magic', LAUNCH_FILE_MAGIC);
  for (const bp of cfg.buildpacks)
    out += `bp\0${field('buildpack id', bp.id)}${field('buildpack api', bp.api)}`;
  if (cfg.defaultProcessType) {
    if (!cfg.processes.some((p) => p.type === cfg.defaultProcessType)) {
      throw new KilnError(
        `launch config: default process type "${cfg.defaultProcessType}" is not among the processes`,
      );
    }
    out += `default\0${field('default process type', cfg.defaultProcessType)}`;
  }
  const seen = new Set<string>();
  for (const p of cfg.processes) {
    if (!/^[A-Za-z0-9._-]+$/.test(p.type)) {
      throw new KilnError(`launch config: process type "${p.type}" must match [A-Za-z0-9._-]+`);
    }
    if (seen.has(p.type)) throw new KilnError(`launch config: process type "${p.type}" is listed twice`);
    seen.add(p.type);
    if (p.command.length === 0) throw new KilnError(`launch config: process "${p.type}" has no command`);
    const api = apis.get(p.buildpackId);
    const append = api !== undefined && ApiVersion.parse(api).lessThan('0.9');
    out += `proc\0${field('type', p.type)}${field('working-dir', p.workingDir ?? '')}${append ? 'append' : 'replace'}\0`;
    out += `${processNeedsShell(p) ? 'shell' : 'direct'}\0`;
    for (const e of p.execEnv ?? []) {
      if (e.includes(',')) throw new KilnError(`launch config: exec-env "${e}" contains a comma`);
    }
    out += field('exec-env', (p.execEnv ?? []).join(','));
    out += `${p.command.length}\0${p.command.map((c) => field('command', c)).join('')}`;
    out += `${p.args.length}\0${p.args.map((a) => field('args', a)).join('')}`;
  }
  return Buffer.from(out, 'utf8');
}

/** writeLaunchConfig writes `<layersDir>/config/kiln-launch` atomically. Returns its path. */
export async function writeLaunchConfig(layersDir: string, cfg: LaunchConfig): Promise<string> {
  const file = path.join(layersDir, LAUNCH_FILE);
  await writeFileAtomic(file, encodeLaunchConfig(cfg));
  return file;
}
