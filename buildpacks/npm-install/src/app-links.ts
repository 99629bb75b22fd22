import { readdir, readlink, rm, symlink } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';

/**
 * anchorAppLinks fixes the links a package manager made in `from` (the app's node_modules) to
 * packages inside the app (`"x": "file:./x"`, workspaces): relative, they pointed at `../x` from
 * the app; once node_modules is moved into the modules layer (`to`) they would point into the
 * layer, where there is no `x`, and the app would build but not start. Each link in `to` whose
 * target, read from where it was made, lies inside `appDir` gets that absolute target (the app
 * is at the same path when the image runs). Links into node_modules itself, absolute links and
 * links out of the app are left as they are. Only the top level and `@scope/` directories hold
 * such links (where npm, pnpm's hoisted linker and Yarn's node-modules linker put them).
 */
export async function anchorAppLinks(from: string, to: string, appDir: string): Promise<number> {
  let anchored = 0;
  for (const rel of await linkCandidates(to)) {
    const link = join(to, rel);
    const target = await readlink(link);
    if (isAbsolute(target)) continue;
    const was = resolve(join(from, rel, '..'), target);
    if (inside(was, from) || !inside(was, appDir)) continue;
    await rm(link);
    await symlink(was, link);
    anchored++;
  }
  return anchored;
}

/** The top-level entries of `dir` and those of its `@scope` directories that are symlinks. */
async function linkCandidates(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isSymbolicLink()) out.push(e.name);
    else if (e.isDirectory() && e.name.startsWith('@'))
      for (const s of await readdir(join(dir, e.name), { withFileTypes: true }))
        if (s.isSymbolicLink()) out.push(`${e.name}/${s.name}`);
  }
  return out;
}

/** inside is true when `p` is `dir` or below it (both absolute, normalized). */
function inside(p: string, dir: string): boolean {
  const r = relative(dir, p);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}
