import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readToml } from './toml.ts';

// A compiled app (Go, Java) ships its binaries, not its source: after the build the workspace is emptied
// except for what the user keeps on purpose — BP_KEEP_FILES (colon-separated globs, Paketo's
// name) and the `include` list of project.toml's build table.

/** keepPatterns collects BP_KEEP_FILES and project.toml's `include` globs. */
export async function keepPatterns(appDir: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const out = (env.BP_KEEP_FILES ?? '')
    .split(':')
    .map((p) => p.trim())
    .filter(Boolean);
  const doc = await readToml(join(appDir, 'project.toml')).catch(() => undefined);
  const tables = [
    (doc?._ as Record<string, unknown> | undefined)?.build,
    ((doc?.io as Record<string, unknown> | undefined)?.buildpacks as Record<string, unknown> | undefined)
      ?.build,
    doc?.build,
  ];
  for (const t of tables) {
    const include = (t as { include?: unknown } | undefined)?.include;
    if (Array.isArray(include)) for (const p of include) if (typeof p === 'string') out.push(p);
  }
  return out;
}

/** globRegExp turns a gitignore-like glob (`*`, `**`, `?`) into a RegExp over relative paths. */
export function globRegExp(glob: string): RegExp {
  const g = glob.replace(/^\.?\//, '').replace(/\/$/, '');
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*' && g[i + 1] === '*') {
      re += '.*';
      i++;
      if (g[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  // A kept directory keeps what is below it.
  return new RegExp(`^${re}(/.*)?$`);
}

/**
 * removeSource deletes every entry of `appDir` no pattern keeps (symlinks are removed, never
 * followed); directories holding kept entries stay with only those. Returns how many entries went.
 */
export async function removeSource(appDir: string, patterns: readonly string[]): Promise<number> {
  const res = patterns.map(globRegExp);
  const kept = (rel: string) => res.some((r) => r.test(rel));
  const holdsKept = (rel: string) =>
    patterns.some((p) => p.replace(/^\.?\//, '').startsWith(`${rel}/`) || p.includes('**'));
  let removed = 0;
  const walk = async (dir: string, prefix: string) => {
    for (const name of await readdir(dir)) {
      const rel = prefix ? `${prefix}/${name}` : name;
      const path = join(dir, name);
      if (kept(rel)) continue;
      const st = await lstat(path);
      if (st.isDirectory() && holdsKept(rel)) {
        await walk(path, rel);
        // A directory left empty held nothing worth keeping.
        if ((await readdir(path)).length === 0) {
          await rm(path, { recursive: true, force: true });
          removed++;
        }
        continue;
      }
      await rm(path, { recursive: true, force: true });
      removed++;
    }
  };
  await walk(appDir, '');
  return removed;
}
