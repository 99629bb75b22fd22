import type { BigIntStats } from 'node:fs';

// What of the app directory never goes into the image's app layers: version-control metadata
// (a `.git` holds the whole history, deleted secrets included; secure-image guidance names shipping
// it as a mistake) and editor/OS junk (swap files hold unsaved copies of sources; IDE folders can
// hold data-source credentials). The files stay in `<app>` during the build, because buildpacks
// read them (the commit, a version from tags); only the export leaves them out. The platform
// records the commit as `io.buildpacks.project.metadata` instead.
//
// The rule applies at any depth (a vendored checkout or a submodule has its own `.git`), by the
// entry's name, to files and directories alike (a worktree's `.git` is a file). A name is exported
// only when the project asks for it by name: project.toml `include` naming it (see keptByInclude).

/** Version-control metadata: git, Mercurial, Subversion, Bazaar, darcs, CVS, Fossil, Pijul, Jujutsu, Sapling. */
export const VCS_NAMES: readonly string[] = [
  '.git',
  '.hg',
  '.svn',
  '.bzr',
  '_darcs',
  'CVS',
  '.fslckout',
  '_FOSSIL_',
  '.pijul',
  '.jj',
  '.sl',
];

/** Editor and OS state directories and files, by exact name. */
export const JUNK_NAMES: readonly string[] = ['.idea', '.vscode', '.DS_Store', 'Thumbs.db'];

/** Editor leftovers by shape: vim swap files, emacs lock and auto-save files, `~` backups. */
const JUNK_PATTERNS: readonly RegExp[] = [/^\..+\.sw[a-p]$/, /^\.#/, /^#.*#$/, /.~$/];

/** isVcsOrJunk says whether an entry named `name` is VCS metadata or editor/OS junk. */
export function isVcsOrJunk(name: string): boolean {
  return VCS_NAMES.includes(name) || JUNK_NAMES.includes(name) || JUNK_PATTERNS.some((p) => p.test(name));
}

/**
 * keptByInclude returns the VCS/junk names that project.toml `include` patterns name explicitly:
 * a pattern one of whose path components is exactly that name (`.git`, `/.git/`, `.git/**`,
 * `vendor/lib/.git`). A wildcard (`*`, `.*`) is not explicit: it keeps `.git` in the build, never
 * in the image.
 */
export function keptByInclude(include: readonly string[] | undefined): string[] {
  const kept = new Set<string>();
  for (const pattern of include ?? []) {
    for (const part of pattern.trim().split('/')) if (isVcsOrJunk(part)) kept.add(part);
  }
  return [...kept].sort();
}

/**
 * appExportFilter is the walk filter of the app layers: false for VCS metadata and junk, unless
 * its name is in `keep`. The walk does not descend into a directory it leaves out.
 */
export function appExportFilter(keep: readonly string[] = []): (rel: string, st: BigIntStats) => boolean {
  return (rel) => {
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    return !isVcsOrJunk(name) || keep.includes(name);
  };
}
