import path from 'node:path';
import { UsageError } from '../internal/errors.ts';
import { checkWorkspace, DEFAULT_WORKSPACE } from '../platform/workspace-path.ts';
import type { Mount } from '../sandbox/executor.ts';
import { parseVolume } from './build-volumes.ts';

// pack's build flags that kiln takes with pack's names and meanings (docs/pack-compatibility.md),
// resolved in one place before anything is pulled or run.

/** The flags as commander parses them. */
export interface PackBuildFlagValues {
  readonly volume: readonly string[];
  readonly creationTime?: string;
  readonly uid?: string;
  readonly gid?: string;
  readonly buildpackRegistry?: string;
  readonly workspace?: string;
}

/** What they resolve to. */
export interface PackBuildFlags {
  readonly volumes: readonly Mount[];
  /** `--creation-time` in seconds. */
  readonly createdAt?: number;
  readonly buildUser?: { readonly uid?: number; readonly gid?: number };
  /** `--workspace`, when it is not the default `/workspace`. */
  readonly workspace?: string;
}

/** resolvePackBuildFlags checks and resolves pack's build flags; `now` is in milliseconds. */
export function resolvePackBuildFlags(
  f: PackBuildFlagValues,
  io: { readonly cwd: string; readonly now: number },
): PackBuildFlags {
  if (f.buildpackRegistry !== undefined)
    throw new UsageError(
      `--buildpack-registry ${f.buildpackRegistry}: kiln resolves no buildpack registry (urn:cnb:registry); name a buildpack by image, .cnb file, directory or URL (-r is no longer --run-image: use --run-image)`,
    );
  const workspace = f.workspace === undefined ? DEFAULT_WORKSPACE : checkWorkspace(f.workspace);
  const volumes = f.volume.map((v) => parseVolume(v, io.cwd, workspace));
  const createdAt = f.creationTime === undefined ? undefined : creationTime(f.creationTime, io.now);
  const uid = f.uid === undefined ? undefined : id('--uid', f.uid);
  const gid = f.gid === undefined ? undefined : id('--gid', f.gid);
  if (uid === 0)
    throw new UsageError('--uid 0: buildpacks never run as root in kiln (its sandbox refuses uid 0)');
  return {
    volumes,
    ...(workspace !== DEFAULT_WORKSPACE ? { workspace } : {}),
    ...(createdAt !== undefined ? { createdAt } : {}),
    ...(uid !== undefined || gid !== undefined
      ? { buildUser: { ...(uid !== undefined ? { uid } : {}), ...(gid !== undefined ? { gid } : {}) } }
      : {}),
  };
}

/** creationTime reads `now` or whole seconds since 1970 (pack's --creation-time). */
export function creationTime(v: string, nowMs: number): number {
  if (v === 'now') return Math.floor(nowMs / 1000);
  if (!/^\d{1,11}$/.test(v)) throw new UsageError(`--creation-time ${v}: expected now or seconds since 1970`);
  return Number(v);
}

function id(flag: string, v: string): number {
  if (!/^\d{1,10}$/.test(v) || Number(v) > 2 ** 31 - 1)
    throw new UsageError(`${flag} ${v}: expected a whole number`);
  return Number(v);
}

/** Where `--cache` puts the build cache: an image, or a directory (a named volume or a bind). */
export type CacheChoice = { readonly image: string } | { readonly dir: string };

/**
 * parseCacheFlag reads pack's `--cache 'type=build;format=image|volume|bind;name=…|source=…'`.
 * A `volume` is a directory named `name` under kiln's cache (`volumesDir`); a `bind` is the
 * host directory `source`. `type=launch` is refused: kiln reuses launch layers from the previous
 * image (in a daemon too) and keeps no separate launch cache.
 */
export function parseCacheFlag(v: string, volumesDir: string, cwd: string): CacheChoice {
  const bad = (why: string): never => {
    throw new UsageError(`--cache ${v}: ${why}`);
  };
  const kv: Record<string, string> = {};
  for (const part of v.split(';')) {
    if (part.trim() === '') continue;
    const i = part.indexOf('=');
    if (i <= 0) bad(`"${part}" is not key=value`);
    const k = part.slice(0, i).trim();
    if (!['type', 'format', 'name', 'source'].includes(k))
      bad(`unknown key "${k}" (type, format, name, source)`);
    kv[k] = part.slice(i + 1).trim();
  }
  const type = kv.type ?? 'build';
  if (type === 'launch')
    bad(
      'type=launch: kiln keeps no launch cache (launch layers are reused from the previous image, in a daemon too)',
    );
  if (type !== 'build') bad(`type=${type}: expected build`);
  const format = kv.format ?? 'volume';
  if (format === 'image') {
    if (!kv.name) bad('format=image needs name=<image reference>');
    return { image: kv.name! };
  }
  if (format === 'volume') {
    const name = kv.name ?? bad('format=volume needs name=<volume name>');
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name))
      bad(`volume name "${name}": letters, digits, _ . - only`);
    return { dir: path.join(volumesDir, name) };
  }
  if (format === 'bind') {
    const source = kv.source ?? bad('format=bind needs source=<host directory>');
    return { dir: path.resolve(cwd, source) };
  }
  return bad(`format=${format}: expected image, volume or bind`);
}
