import { join } from 'node:path';
import { writeToml } from './toml.ts';

/** Process is one `[[processes]]` entry of launch.toml (Buildpack API 0.9+: array command, direct exec). */
export interface Process {
  readonly type: string;
  readonly command: readonly string[];
  readonly args?: readonly string[];
  readonly default?: boolean;
  readonly workingDir?: string;
}

/** writeLaunchToml writes `<layers>/<bp>/launch.toml` with the given processes. */
export async function writeLaunchToml(layersDir: string, processes: readonly Process[]): Promise<void> {
  await writeToml(join(layersDir, 'launch.toml'), {
    processes: processes.map((p) => ({
      type: p.type,
      command: [...p.command],
      args: [...(p.args ?? [])],
      default: p.default === true,
      ...(p.workingDir ? { 'working-dir': p.workingDir } : {}),
    })),
  });
}
