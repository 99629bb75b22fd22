import { join } from 'node:path';
import { readJsonIfExists } from '../../_shared/fsutil.ts';
import { type Component, integrityHex, npmPurl } from '../../_shared/sbom.ts';

interface LockEntry {
  readonly name?: string;
  readonly version?: string;
  readonly license?: string;
  readonly integrity?: string;
  readonly dev?: boolean;
  readonly link?: boolean;
  readonly extraneous?: boolean;
}

/**
 * installedPackages lists what is really installed, from npm's hidden lock file
 * (`node_modules/.package-lock.json`, written by npm 7+ for the tree on disk, so packages skipped
 * for another platform or pruned as dev dependencies are not listed), falling back to the app's
 * lock file without its dev entries.
 */
export async function installedPackages(
  nodeModules: string,
  appLock: string | undefined,
): Promise<Component[]> {
  const hidden = (await readJsonIfExists(join(nodeModules, '.package-lock.json'))) as
    | { packages?: Record<string, LockEntry> }
    | undefined;
  const lock =
    hidden ??
    (appLock ? ((await readJsonIfExists(appLock)) as { packages?: Record<string, LockEntry> }) : undefined);
  const packages = lock?.packages ?? {};
  const seen = new Set<string>();
  const out: Component[] = [];
  for (const [key, entry] of Object.entries(packages)) {
    if (key === '' || !key.includes('node_modules/') || entry.link || entry.extraneous || entry.dev) continue;
    const name = entry.name ?? key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
    if (!entry.version) continue;
    const purl = npmPurl(name, entry.version);
    if (seen.has(purl)) continue;
    seen.add(purl);
    const sha512 = integrityHex(entry.integrity);
    out.push({
      name,
      version: entry.version,
      purl,
      type: 'library',
      ecosystem: 'npm',
      ...(entry.license ? { license: entry.license } : {}),
      ...(sha512 ? { sha512 } : {}),
    });
  }
  return out;
}
