import path from 'node:path';
import { KilnError } from '../internal/errors.ts';
import type { TarEntry } from '../layers/tar-writer.ts';

// App slices (Buildpack API `[[slices]]` of launch.toml): which app files go into which layer.
// Matching follows the reference lifecycle, i.e. Go's filepath.Match on each path prefix.

/** Go's filepath.Match for one path segment pattern set (`*`, `?`, `[...]`, `\` escapes). */
function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < glob.length) re += escapeRe(glob[++i]!);
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) throw new KilnError(`invalid slice pattern "${glob}": unclosed "["`);
      let cls = glob.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replaceAll('\\', '\\\\')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * splitSlices partitions app entries (paths under `workspace/`) into one list per slice and the
 * rest. A slice takes the files and directories its globs match (a matched directory brings its
 * whole subtree) plus their parent directories; a path goes to the first slice that matches it.
 */
export function splitSlices(
  entries: readonly TarEntry[],
  prefix: string,
  slices: readonly { paths: readonly string[] }[],
): { slices: TarEntry[][]; rest: TarEntry[] } {
  const patterns = slices.map((s) =>
    s.paths.map((p) => {
      const clean = path.posix.normalize(p).replace(/^\.\//, '').replace(/\/$/, '');
      if (clean.startsWith('..') || path.posix.isAbsolute(clean))
        throw new KilnError(`slice path "${p}" escapes the app directory`);
      return globToRegExp(clean);
    }),
  );
  const taken = new Map<string, number>();
  const rel = (e: TarEntry) => (e.path === prefix ? '' : e.path.slice(prefix.length + 1));
  for (const e of entries) {
    const r = rel(e);
    if (r === '') continue;
    for (let s = 0; s < patterns.length; s++) {
      const parts = r.split('/');
      // The path matches when it, or one of its parent directories, matches a glob.
      const hit = patterns[s]!.some((re) => parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/'))));
      if (hit) {
        taken.set(e.path, s);
        break;
      }
    }
  }
  const out: TarEntry[][] = slices.map(() => []);
  const rest: TarEntry[] = [];
  const parentsAdded: Set<string>[] = slices.map(() => new Set());
  for (const e of entries) {
    const s = taken.get(e.path);
    if (s === undefined) {
      // Directories stay in the rest layer too (they are the parents of what it holds).
      rest.push(e);
      continue;
    }
    if (e.type === 'dir') {
      parentsAdded[s]!.add(e.path);
      out[s]!.push(e);
      continue;
    }
    out[s]!.push(e);
  }
  // Add every slice's missing parent directories (entries are sorted, so parents come first).
  const dirs = new Map(entries.filter((e) => e.type === 'dir').map((e) => [e.path, e]));
  for (let s = 0; s < out.length; s++) {
    const need = new Set<string>();
    for (const e of out[s]!) {
      const parts = e.path.split('/');
      for (let i = 1; i < parts.length; i++) need.add(parts.slice(0, i).join('/'));
    }
    const extra = [...need]
      .filter((p) => !parentsAdded[s]!.has(p))
      .map((p) => dirs.get(p)!)
      .filter(Boolean);
    out[s] = [...extra, ...out[s]!].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  }
  // A directory fully moved into a slice still appears in the rest only if something left in it.
  return { slices: out, rest };
}
