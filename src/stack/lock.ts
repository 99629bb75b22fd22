import { readFile } from 'node:fs/promises';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { z } from 'zod';
import type { PackageRecord } from '../debian/package.ts';
import { compareVersions } from '../debian/version.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { sha256 } from '../oci/digest.ts';
import { DEFAULT_FLAVOUR, type ImageSpec, runFlavours, type StackConfig } from './config.ts';

const LockedPackageSchema = z.strictObject({
  name: z.string(),
  version: z.string(),
  arch: z.string(),
  source: z.string(),
  suite: z.string(),
  filename: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
/** LockedPackage is one exact package of an image in stack.lock. */
export type LockedPackage = z.infer<typeof LockedPackageSchema>;

const ArchLockSchema = z.strictObject({
  /** Digest of the resolution inputs (suites, arch, package lists): a changed config makes the lock stale. */
  inputs: z.string(),
  run: z.strictObject({ packages: z.array(LockedPackageSchema) }),
  build: z.strictObject({ packages: z.array(LockedPackageSchema) }),
  /** One section per run-image flavour other than the default (`[[flavours.<name>.packages]]`). */
  flavours: z.record(z.string(), z.strictObject({ packages: z.array(LockedPackageSchema) })).optional(),
});

const LockSchema = z.strictObject({
  version: z.literal(1),
  ...ArchLockSchema.shape,
  /**
   * The other architectures' packages, one section each (`[platforms.arm64]`, with its own
   * `inputs`, `[[platforms.arm64.run.packages]]`, ...): the top level is the stack file's
   * `[archive] arch`, so a single-architecture lock reads as before.
   */
  platforms: z.record(z.string(), ArchLockSchema).optional(),
});
/** StackLock is a parsed stack.lock (one architecture's view: `platforms` holds the others). */
export type StackLock = z.infer<typeof LockSchema>;

/**
 * forArch is `config` for another architecture: the same recipe with `[archive] arch` replaced
 * (Debian serves every architecture from the same signed indexes).
 */
export function forArch(config: StackConfig, arch: string): StackConfig {
  return arch === config.archive.arch ? config : { ...config, archive: { ...config.archive, arch } };
}

/**
 * lockForArch is the lock of one architecture: the top level for the stack file's own, else its
 * `[platforms.<arch>]` section (undefined when the lock has none).
 */
export function lockForArch(
  lock: StackLock | undefined,
  config: StackConfig,
  arch: string,
): StackLock | undefined {
  if (!lock) return undefined;
  if (arch === config.archive.arch) {
    // Without the other sections: adding arm64 must not change the amd64 images' recipe.
    const { platforms: _, ...own } = lock;
    return own;
  }
  const s = lock.platforms?.[arch];
  return s ? { version: 1, ...s } : undefined;
}

/**
 * withArchLock is `lock` with `archLock` (resolved for `arch`) put in its place: the top level for
 * the stack file's own architecture (other sections kept), else `[platforms.<arch>]`.
 */
export function withArchLock(
  lock: StackLock | undefined,
  config: StackConfig,
  arch: string,
  archLock: StackLock,
): StackLock {
  const { version: _v, platforms: _p, ...section } = archLock;
  if (arch === config.archive.arch)
    return { ...archLock, ...(lock?.platforms ? { platforms: lock.platforms } : {}) };
  if (!lock) throw new KilnError(`stack lock: resolve ${config.archive.arch} before ${arch}`);
  return { ...lock, platforms: { ...lock.platforms, [arch]: section } };
}

/** inputsDigest is the digest of what resolution depends on in `config` (not the mirror). */
export function inputsDigest(config: StackConfig): string {
  const spec = (s: ImageSpec) => ({ packages: s.packages, exclude: s.exclude, essential: s.essential });
  const a = config.archive;
  // Flavours join the digest only when there are some: a stack without them keeps its lock.
  const flavours = runFlavours(config)
    .slice(1)
    .map((f) => ({ flavour: f.flavour, packages: f.packages, exclude: f.exclude }));
  return sha256(
    JSON.stringify({
      arch: a.arch,
      components: a.components,
      suites: a.suites,
      run: spec(config.run),
      build: spec(config.build),
      ...(flavours.length ? { flavours } : {}),
    }),
  );
}

/**
 * lockedFlavour is the locked package list of a run-image flavour (DEFAULT_FLAVOUR: `run`); a
 * flavour the lock does not know is an error saying to update it.
 */
export function lockedFlavour(lock: StackLock, flavour: string): readonly LockedPackage[] {
  if (flavour === DEFAULT_FLAVOUR) return lock.run.packages;
  const f = lock.flavours?.[flavour];
  if (!f)
    throw new KilnError(
      `stack lock has no packages for the run-image flavour "${flavour}" (run kiln stack update)`,
    );
  return f.packages;
}

/** allLocked is every package of every image of the lock (for prefetching). */
export function allLocked(lock: StackLock): LockedPackage[] {
  return [
    ...lock.run.packages,
    ...lock.build.packages,
    ...Object.values(lock.flavours ?? {}).flatMap((f) => f.packages),
  ];
}

/** lockedFrom turns resolved records into lock entries. */
export function lockedFrom(pkgs: readonly PackageRecord[]): LockedPackage[] {
  return pkgs.map((p) => ({
    name: p.name,
    version: p.version,
    arch: p.arch,
    source: p.source,
    suite: p.suite,
    filename: p.filename,
    size: p.size,
    sha256: p.sha256,
  }));
}

/** formatLock renders a lock as TOML, packages sorted by name (stable diffs). */
export function formatLock(lock: StackLock): string {
  const sorted = (l: readonly LockedPackage[]) =>
    [...l].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const section = (l: z.infer<typeof ArchLockSchema>) => ({
    inputs: l.inputs,
    run: { packages: sorted(l.run.packages) },
    build: { packages: sorted(l.build.packages) },
    ...(l.flavours && Object.keys(l.flavours).length
      ? {
          flavours: Object.fromEntries(
            Object.keys(l.flavours)
              .sort()
              .map((k) => [k, { packages: sorted(l.flavours![k]!.packages) }]),
          ),
        }
      : {}),
  });
  const platforms = lock.platforms ?? {};
  const body = stringifyToml({
    version: lock.version,
    ...section(lock),
    ...(Object.keys(platforms).length
      ? {
          platforms: Object.fromEntries(
            Object.keys(platforms)
              .sort()
              .map((a) => [a, section(platforms[a]!)]),
          ),
        }
      : {}),
  });
  return `# stack.lock: exact Debian packages of the stack's images. Written by \`kiln stack update\`; do not edit.\n${body}\n`;
}

/** parseLock validates lock text; errors name the file and key. */
export function parseLock(text: string, file: string): StackLock {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    throw new UsageError(`invalid lock file ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = LockSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new UsageError(`invalid lock file ${file}: key "${issue.path.join('.')}": ${issue.message}`);
  }
  return r.data;
}

/** readLock reads a lock file; undefined when it does not exist. */
export async function readLock(file: string): Promise<StackLock | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseLock(text, file);
}

/** writeLock writes a lock file atomically (temp + rename). */
export async function writeLock(file: string, lock: StackLock): Promise<void> {
  await writeFileAtomic(file, formatLock(lock));
}

/** lockDigest is the digest of a lock's canonical text: it names a set of exact packages. */
export function lockDigest(lock: StackLock): string {
  return sha256(formatLock(lock));
}

/** LockChange is one line of `kiln stack update`'s report. */
export interface LockChange {
  /** `run`, `build`, or `run-<flavour>`. */
  readonly image: string;
  readonly kind: 'added' | 'removed' | 'upgraded' | 'downgraded';
  readonly name: string;
  readonly from?: string;
  readonly to?: string;
}

/** diffLocks lists what changed from `before` (possibly absent) to `after`, by image and name. */
export function diffLocks(before: StackLock | undefined, after: StackLock): LockChange[] {
  const out: LockChange[] = [];
  const images: [string, readonly LockedPackage[] | undefined, readonly LockedPackage[]][] = [
    ['run', before?.run.packages, after.run.packages],
    ['build', before?.build.packages, after.build.packages],
  ];
  const flavours = new Set([...Object.keys(before?.flavours ?? {}), ...Object.keys(after.flavours ?? {})]);
  for (const f of [...flavours].sort())
    images.push([`run-${f}`, before?.flavours?.[f]?.packages, after.flavours?.[f]?.packages ?? []]);
  for (const [image, was, is] of images) {
    const old = new Map((was ?? []).map((p) => [p.name, p]));
    const now = new Map(is.map((p) => [p.name, p]));
    const names = [...new Set([...old.keys(), ...now.keys()])].sort();
    for (const name of names) {
      const a = old.get(name);
      const b = now.get(name);
      if (!a && b) out.push({ image, kind: 'added', name, to: b.version });
      else if (a && !b) out.push({ image, kind: 'removed', name, from: a.version });
      else if (a && b && a.version !== b.version) {
        out.push({
          image,
          kind: compareVersions(b.version, a.version) > 0 ? 'upgraded' : 'downgraded',
          name,
          from: a.version,
          to: b.version,
        });
      }
    }
  }
  return out;
}
