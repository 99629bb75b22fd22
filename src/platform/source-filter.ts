import ignore from 'ignore';

/**
 * SourceFilter decides which app files a build sees. `rel` is the path relative to the app
 * directory with `/` separators and no leading `./`; `isDir` tells directories apart so that
 * directory-only patterns (`node_modules/`) work.
 *
 * - `includes(rel, false)`: the file goes into the build.
 * - `includes(rel, true)`: the directory itself is wanted (exclude mode: not excluded; include
 *   mode: matched, so everything under it is wanted).
 * - `mayContain(rel)`: the walk should descend into the directory: false only when nothing below
 *   can be wanted (excluded directory: gitignore cannot re-include files under it).
 */
export interface SourceFilter {
  readonly mode: 'all' | 'include' | 'exclude';
  includes(rel: string, isDir: boolean): boolean;
  mayContain(rel: string): boolean;
}

/**
 * sourceFilter builds the filter of project.toml's include or exclude lists (gitignore syntax, as
 * pack compiles them; at most one of the two is set). With neither, every file is included — like
 * pack, kiln does not drop project.toml or .git by itself.
 */
export function sourceFilter(
  include: readonly string[] | undefined,
  exclude: readonly string[] | undefined,
): SourceFilter {
  if (exclude !== undefined && exclude.length > 0) {
    const ig = ignore().add([...exclude]);
    const excluded = (rel: string, isDir: boolean) => ig.ignores(isDir ? `${rel}/` : rel);
    return {
      mode: 'exclude',
      includes: (rel, isDir) => !excluded(rel, isDir),
      mayContain: (rel) => !excluded(rel, true),
    };
  }
  if (include !== undefined && include.length > 0) {
    const ig = ignore().add([...include]);
    // `ignores` also answers true for paths under a matched directory, which is exactly the
    // include semantics pack has (`src` includes `src/a.js`).
    const matched = (rel: string, isDir: boolean) => ig.ignores(isDir ? `${rel}/` : rel);
    return {
      mode: 'include',
      includes: matched,
      // Any directory may hold an included file (`*.js` matches at every depth).
      mayContain: () => true,
    };
  }
  return { mode: 'all', includes: () => true, mayContain: () => true };
}
