import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type DebControl, extractDebData, readDebControl } from '../debian/deb.ts';
import type { XzDecoder } from '../debian/decompress.ts';
import { mapBounded } from '../internal/bounded.ts';
import { mkdirExact } from './fsx.ts';
import type { LockedPackage } from './lock.ts';

/** Profile selects what of each package lands in the tree. */
export type Profile = 'run' | 'build';

/** UnpackedPackage is a package whose data is in the staging tree. */
export interface UnpackedPackage {
  readonly pkg: LockedPackage;
  readonly control: DebControl;
  /** Every path of the package's data archive, as dpkg lists it ("/." first). */
  readonly paths: readonly string[];
  /** Captured /usr/share/doc/<pkg>/copyright texts by path (read before docs are dropped). */
  readonly copyrights: ReadonlyMap<string, string>;
}

/** Top-level directories that Debian 12 merges into /usr (the usrmerge layout). */
const MERGED = new Set(['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']);

/** mergedUsr maps a package path onto the merged-/usr tree ("bin/sh" -> "usr/bin/sh"). */
export function mergedUsr(p: string): string {
  const slash = p.indexOf('/');
  const top = slash < 0 ? p : p.slice(0, slash);
  return MERGED.has(top) ? `usr/${p}` : p;
}

const DROPPED = [
  'usr/share/man/',
  'usr/share/info/',
  'usr/share/locale/',
  'usr/share/lintian/',
  'usr/share/linda/',
  'usr/share/bug/',
  'usr/share/doc-base/',
  'usr/share/gtk-doc/',
];

/**
 * skipperOf says which package paths a profile leaves out: documentation, manuals, translations
 * (both images); glibc's gconv modules and tzdata's duplicate `right/` zones (run image). The
 * `copyright` files and the `/usr/share/doc/<pkg>` entries stay: they are the licence record.
 */
export function skipperOf(profile: Profile): (p: string) => boolean {
  return (p) => {
    if (p.startsWith('usr/share/doc/')) return !/^usr\/share\/doc\/[^/]+(\/copyright)?$/.test(p);
    if (p === 'usr/share/man' || p === 'usr/share/info' || p === 'usr/share/locale') return true;
    for (const d of DROPPED) if (p.startsWith(d)) return true;
    if (profile === 'run') {
      if (/^usr\/lib\/[^/]+\/gconv(\/|$)/.test(p)) return true;
      if (p.startsWith('usr/share/zoneinfo/right/') || p === 'usr/share/zoneinfo/right') return true;
    }
    return false;
  };
}

/** prepareRoot creates the merged-/usr skeleton (`/bin -> usr/bin` and so on) in an empty dir. */
export async function prepareRoot(root: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'lib', 'lib64']) {
    await mkdirExact(join(root, 'usr', d));
    await symlink(`usr/${d}`, join(root, d));
  }
}

/**
 * unpackPackages unpacks every package's data into `root` (prepared by prepareRoot), a few at a
 * time. When two packages ship the same path, the later one in `items` order wins, whatever
 * order the unpacking finishes in, so the tree is the same on every run.
 */
export async function unpackPackages(
  items: readonly { pkg: LockedPackage; deb: string }[],
  root: string,
  opts: { profile: Profile; parallel?: number; xz?: XzDecoder; onDone?: (p: LockedPackage) => void },
): Promise<UnpackedPackage[]> {
  const owner = new Map<string, number>();
  const skip = skipperOf(opts.profile);
  return mapBounded(items, Math.max(1, opts.parallel ?? 3), async ({ pkg, deb }, i) => {
    const control = await readDebControl(deb, opts.xz);
    const res = await extractDebData(deb, root, {
      rewrite: mergedUsr,
      skip,
      // Maintainer scripts of the build image compile Python files whose .pyc embed mtimes.
      times: opts.profile === 'build',
      capture: (p) => p.startsWith('usr/share/doc/') && p.endsWith('/copyright'),
      claim: (target) => {
        const o = owner.get(target);
        if (o !== undefined && o > i) return false;
        owner.set(target, i);
        return true;
      },
      ...(opts.xz ? { xz: opts.xz } : {}),
    });
    const copyrights = new Map([...res.captured].map(([k, v]) => [k, v.toString('utf8')]));
    opts.onDone?.(pkg);
    return { pkg, control, paths: res.paths, copyrights };
  });
}
