import { UsageError } from '../internal/errors.ts';
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
}

/** What they resolve to. */
export interface PackBuildFlags {
  readonly volumes: readonly Mount[];
  /** `--creation-time` in seconds. */
  readonly createdAt?: number;
  readonly buildUser?: { readonly uid?: number; readonly gid?: number };
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
  const volumes = f.volume.map((v) => parseVolume(v, io.cwd));
  const createdAt = f.creationTime === undefined ? undefined : creationTime(f.creationTime, io.now);
  const uid = f.uid === undefined ? undefined : id('--uid', f.uid);
  const gid = f.gid === undefined ? undefined : id('--gid', f.gid);
  if (uid === 0)
    throw new UsageError('--uid 0: buildpacks never run as root in kiln (its sandbox refuses uid 0)');
  return {
    volumes,
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
