import { join } from 'node:path';
import { exists, readJsonIfExists } from '../../_shared/fsutil.ts';

// The Node.js headers (include/: 3,300 files, 65 MB, mostly OpenSSL) are for node-gyp, which npm
// runs only for a package with an install script (npm gives every package with a binding.gyp the
// implicit `node-gyp rebuild`). Kept for an app that never compiles anything, they cost every
// build a restore and a cache check of those 3,300 files, and the cache their space: so they are
// provided only when the app may build a native addon.

/** Install scripts npm runs at `npm ci`/`npm install` (any of them may call node-gyp). */
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall'];

/**
 * mayBuildNativeAddons says whether installing the app's dependencies may compile a native addon.
 * Only a lockfile npm writes since v7 (lockfileVersion 2 or 3) can say no: its `packages` carry
 * `hasInstallScript` for every registry package with an install script (npm publish turns a
 * binding.gyp into one). Packages from elsewhere (a `file:` directory or tarball, a git
 * repository, a workspace) are not normalized that way, so any of them means yes; so do no such
 * lockfile, one that does not read, and install scripts or a binding.gyp in the app itself.
 */
export async function mayBuildNativeAddons(appDir: string): Promise<boolean> {
  if (await exists(join(appDir, 'binding.gyp'))) return true;
  try {
    const pkg = (await readJsonIfExists(join(appDir, 'package.json'))) as { scripts?: unknown } | undefined;
    const scripts = pkg?.scripts;
    if (scripts && typeof scripts === 'object' && INSTALL_SCRIPTS.some((s) => s in scripts)) return true;
    // npm prefers npm-shrinkwrap.json over package-lock.json, as here.
    const lock =
      (await readJsonIfExists(join(appDir, 'npm-shrinkwrap.json'))) ??
      (await readJsonIfExists(join(appDir, 'package-lock.json')));
    return !lockSaysNone(lock);
  } catch {
    // Unreadable: npm install will say what is wrong; the headers are there if it gets that far.
    return true;
  }
}

/**
 * lockSaysNone is true for a v2/v3 lockfile whose packages all come from a registry (a `resolved`
 * URL, or none: the configured registry) and none of which has an install script.
 */
function lockSaysNone(lock: unknown): boolean {
  if (!lock || typeof lock !== 'object') return false;
  const { lockfileVersion, packages } = lock as { lockfileVersion?: unknown; packages?: unknown };
  if (lockfileVersion !== 2 && lockfileVersion !== 3) return false;
  if (!packages || typeof packages !== 'object') return false;
  for (const entry of Object.values(packages)) {
    if (!entry || typeof entry !== 'object') return false;
    const e = entry as { hasInstallScript?: unknown; link?: unknown; resolved?: unknown };
    if (e.hasInstallScript === true || e.link === true) return false;
    if (e.resolved !== undefined && !(typeof e.resolved === 'string' && /^https?:\/\//.test(e.resolved)))
      return false;
  }
  return true;
}
