/**
 * The launcher as the exporter sees it: the built binary (dist/launcher/launcher, made by
 * scripts/build.d/launcher.sh), its identity, the tar entries of the launcher and process-types
 * layers, the per-image launch file, and the launcher's own SBOM files.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../internal/errors.ts';
import type { TarEntry } from '../layers/tar-writer.ts';
import { hexOf } from '../oci/digest.ts';
import { digestStream } from '../oci/validate.ts';

export {
  encodeLaunchConfig,
  LAUNCH_FILE,
  LAUNCH_FILE_MAGIC,
  LAUNCH_SHELLS,
  type LaunchBuildpack,
  type LaunchConfig,
  type LaunchProcess,
  processNeedsShell,
  writeLaunchConfig,
} from './launch-file.ts';
export { LAUNCHER_SBOM_DIR, type LauncherSbomFiles, launcherSbom, writeLauncherSbom } from './sbom.ts';

/** Where the launcher goes in an image. */
export const LAUNCHER_PATH = '/cnb/lifecycle/launcher';
/** The folder of the `/cnb/process/<type>` symlinks. */
export const PROCESS_DIR = '/cnb/process';

/** The repository's dist/launcher (the build step's output). */
export const DEFAULT_LAUNCHER_DIR = fileURLToPath(new URL('../../dist/launcher/', import.meta.url));

/** What the build step recorded about the binary (dist/launcher/build-info.json). */
export interface LauncherInfo {
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  readonly size: number;
  readonly arch: string;
  /** The musl C library linked in statically (Debian package musl-dev). */
  readonly musl: {
    readonly package: string;
    readonly source: string;
    readonly version: string;
    readonly arch: string;
    readonly distro: string;
  };
  /** Absolute path of the binary. */
  readonly path: string;
}

/**
 * launcherDirFor is where the build step put the launcher for `arch` (an OCI architecture):
 * dist/launcher for this machine's (`hostArch`), dist/<arch>/launcher for a cross-compiled one
 * (scripts/build.d/cross.sh).
 */
export function launcherDirFor(arch: string, hostArch: string): string {
  return arch === hostArch ? DEFAULT_LAUNCHER_DIR : path.join(DEFAULT_LAUNCHER_DIR, '..', arch, 'launcher');
}

/**
 * loadLauncher reads build-info.json and checks the binary's sha256 against it, so an image never
 * ships a launcher other than the one its SBOM describes; with `arch`, the binary must be built
 * for that architecture (an image of another one would fail with "exec format error").
 */
export async function loadLauncher(dir: string = DEFAULT_LAUNCHER_DIR, arch?: string): Promise<LauncherInfo> {
  const bin = path.join(dir, 'launcher');
  let raw: string;
  try {
    raw = await readFile(path.join(dir, 'build-info.json'), 'utf8');
  } catch {
    const cross =
      arch === 'arm64'
        ? ' after apt-get install gcc-aarch64-linux-gnu and, with dpkg --add-architecture arm64, musl-dev:arm64 (scripts/bootstrap.sh does both)'
        : '';
    throw new KilnError(
      `${arch ?? 'the'} launcher not built: ${bin} is missing (run scripts/build.sh${cross})`,
    );
  }
  const info = JSON.parse(raw) as Omit<LauncherInfo, 'path'>;
  if (arch !== undefined && info.arch !== arch)
    throw new KilnError(`launcher ${bin} is built for ${info.arch}, not ${arch}: run scripts/build.sh`);
  const actual = hexOf((await digestStream(createReadStream(bin))).digest);
  if (actual !== info.sha256) {
    throw new KilnError(
      `launcher ${bin} has sha256 ${actual}, expected ${info.sha256} from build-info.json: rebuild it`,
    );
  }
  return { ...info, path: bin };
}

/**
 * launcherLayerEntries: the launcher layer (`/cnb/lifecycle/launcher`, root-owned, 0755, with
 * its parent directories), ready for the normalizing tar writer.
 */
export async function launcherLayerEntries(launcher: LauncherInfo): Promise<TarEntry[]> {
  const size = (await stat(launcher.path)).size;
  return [
    { path: 'cnb', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
    { path: 'cnb/lifecycle', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
    {
      path: LAUNCHER_PATH.slice(1),
      type: 'file',
      mode: 0o755,
      uid: 0,
      gid: 0,
      size,
      open: () => createReadStream(launcher.path),
    },
  ];
}

/**
 * processTypesLayerEntries: the process-types layer, one `/cnb/process/<type>` symlink to the
 * launcher per process type (the launcher picks the process from argv[0]). Empty list: no layer.
 */
export function processTypesLayerEntries(types: readonly string[]): TarEntry[] {
  if (types.length === 0) return [];
  const entries: TarEntry[] = [
    { path: 'cnb', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
    { path: 'cnb/process', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
  ];
  for (const t of [...new Set(types)].sort()) {
    if (!/^[A-Za-z0-9._-]+$/.test(t) || t === '.' || t === '..') {
      throw new KilnError(`process type "${t}" must match [A-Za-z0-9._-]+`);
    }
    entries.push({
      path: `cnb/process/${t}`,
      type: 'symlink',
      mode: 0o777,
      uid: 0,
      gid: 0,
      linkname: LAUNCHER_PATH,
    });
  }
  return entries;
}
