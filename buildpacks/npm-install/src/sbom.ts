import { readdir } from 'node:fs/promises';
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
  const jsonLock = appLock?.endsWith('.json') ? appLock : undefined;
  const lock =
    hidden ??
    (jsonLock ? ((await readJsonIfExists(jsonLock)) as { packages?: Record<string, LockEntry> }) : undefined);
  // pnpm and yarn keep no npm-style lock: read the installed tree itself.
  if (!lock) return walkNodeModules(nodeModules);
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

/** walkNodeModules lists the packages installed in a node_modules tree (nested ones included). */
export async function walkNodeModules(nodeModules: string): Promise<Component[]> {
  const out = new Map<string, Component>();
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (depth > 32) return;
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      if (name.startsWith('@')) {
        for (const sub of (await readdir(join(dir, name)).catch(() => [] as string[])).sort()) {
          await visitPackage(join(dir, name, sub), depth);
        }
      } else {
        await visitPackage(join(dir, name), depth);
      }
    }
  };
  const visitPackage = async (dir: string, depth: number): Promise<void> => {
    const pkg = (await readJsonIfExists(join(dir, 'package.json')).catch(() => undefined)) as
      | { name?: string; version?: string; license?: unknown }
      | undefined;
    if (pkg?.name && pkg.version) {
      const purl = npmPurl(pkg.name, pkg.version);
      out.set(purl, {
        name: pkg.name,
        version: pkg.version,
        purl,
        type: 'library',
        ecosystem: 'npm',
        ...(typeof pkg.license === 'string' ? { license: pkg.license } : {}),
      });
    }
    await visit(join(dir, 'node_modules'), depth + 1);
  };
  await visit(nodeModules, 0);
  return [...out.values()];
}
