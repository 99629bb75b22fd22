import path from 'node:path';
import { promisify } from 'node:util';
import { inflate } from 'node:zlib';
import type { ProjectMetadata } from '../cnb/lifecycle-metadata.ts';
import {
  lstatInRoot,
  readdirInRootIfExists,
  readFileInRootIfExists,
  readTextInRootIfExists,
  UntrustedFileError,
} from '../internal/safe-read.ts';
import type { ProjectDescriptor } from './project-descriptor.ts';

// io.buildpacks.project.metadata (project-metadata.toml as JSON), filled the way pack fills it:
// a project.toml declaring `_.version` or `_.source-url` gives
//   { source: { type: "project", version: { declared }, metadata: { url } } }
// otherwise a git checkout gives
//   { source: { type: "git", version: { commit, describe }, metadata: { refs, url } } }
// and anything else gives {}. Git is read from the files in .git (no git binary needed on the
// host); credentials in a remote URL are removed, they must never reach an image label.

const inflateAsync = promisify(inflate);

/** projectMetadata computes the project metadata of the app in `appDir` described by `descriptor`. */
export async function projectMetadata(
  descriptor: ProjectDescriptor,
  appDir: string,
): Promise<ProjectMetadata> {
  const { version, sourceUrl } = descriptor.project;
  if (version !== undefined || sourceUrl !== undefined) {
    return {
      source: {
        type: 'project',
        version: { declared: version ?? '' },
        metadata: { url: stripCredentials(sourceUrl ?? '') },
      },
    };
  }
  const git = await gitMetadata(appDir);
  return git ? { source: git } : {};
}

/** The `source` of a git checkout, as pack records it. */
export type GitSource = {
  type: 'git';
  version: { commit: string; describe: string };
  metadata: { refs: string[]; url: string; repository: string };
};

/**
 * gitMetadata reads HEAD, its branch, the tags on it and the origin URL of a git checkout. The app
 * directory is untrusted: every file is read through safe-read inside it (a link in `.git` is
 * refused, never followed), sizes are capped, and a `.git` file (worktree, submodule) is followed
 * only to a git dir inside the app directory. Anything unreadable means no git metadata, never an
 * error: the metadata is informative.
 */
export async function gitMetadata(appDir: string): Promise<GitSource | undefined> {
  try {
    return await readGit(new GitFiles(appDir));
  } catch (e) {
    if (e instanceof UntrustedFileError) return undefined;
    throw e;
  }
}

async function readGit(g: GitFiles): Promise<GitSource | undefined> {
  const gitDir = g.findGitDir();
  if (gitDir === undefined) return undefined;
  const commonDir = g.commonDir(gitDir);
  const head = g.text(`${gitDir}/HEAD`, SMALL)?.trim();
  if (!head) return undefined;
  let branchRef: string | undefined;
  let commit: string | undefined;
  if (head.startsWith('ref: ')) {
    branchRef = head.slice(5).trim();
    commit = g.resolveRef(gitDir, commonDir, branchRef);
  } else if (HASH.test(head)) {
    commit = head;
  }
  if (!commit) return undefined; // an empty repository: no commit yet
  const tags = await g.tagsAt(commonDir, commit);
  const refs = [branchRef ? shortRef(branchRef) : '', ...tags];
  const url = stripCredentials(originUrl(g.text(`${commonDir}/config`, CONFIG_MAX) ?? '') ?? '');
  return {
    type: 'git',
    version: { commit, describe: tags[0] ?? commit },
    // `url` as pack writes it; `repository` names the same for readers of OCI-style source metadata.
    metadata: { refs, url, repository: url },
  };
}

/** stripCredentials removes `user:password@` from a URL (and leaves anything else as is). */
export function stripCredentials(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@]*@/, '$1');
}

const HASH = /^[0-9a-f]{40,64}$/;
/** Caps on what is read of an untrusted checkout (HEAD and refs are one line; a config is small). */
const SMALL = 4096;
const CONFIG_MAX = 1024 * 1024;
const OBJECT_MAX = 1024 * 1024;
/** Most loose tags looked at: a checkout with more only loses some `describe` candidates. */
const MAX_LOOSE_TAGS = 10_000;

type PackedRef = { ref: string; hash: string; peeled?: string };

/** GitFiles reads a checkout's git files inside the app directory only (paths relative to it). */
class GitFiles {
  readonly #root: string;
  readonly #opts = { what: 'the app directory', shown: '<app>', follow: 'never' } as const;
  #packed: PackedRef[] | undefined;
  constructor(root: string) {
    this.#root = root;
  }

  text(rel: string, maxBytes: number): string | undefined {
    return readTextInRootIfExists(this.#root, rel, { ...this.#opts, maxBytes });
  }

  bytes(rel: string, maxBytes: number): Buffer | undefined {
    return readFileInRootIfExists(this.#root, rel, { ...this.#opts, maxBytes });
  }

  /** inside normalises `rel` (relative to the app dir) and returns it only when it stays inside. */
  inside(rel: string): string | undefined {
    const n = path.posix.normalize(rel);
    return n === '..' || n.startsWith('../') || n.startsWith('/') ? undefined : n.replace(/\/+$/, '');
  }

  findGitDir(): string | undefined {
    const st = lstatInRoot(this.#root, '.git', this.#opts);
    if (!st) return undefined;
    if (st.isDirectory()) return '.git';
    if (!st.isFile()) return undefined;
    // A worktree or submodule: `.git` is a file saying `gitdir: <path>`.
    const m = /^gitdir:\s*(.+)$/m.exec(this.text('.git', SMALL) ?? '');
    if (!m) return undefined;
    const target = m[1]!.trim();
    const rel = path.isAbsolute(target) ? path.relative(this.#root, target) : target;
    return this.inside(rel);
  }

  commonDir(gitDir: string): string {
    const c = this.text(`${gitDir}/commondir`, SMALL)?.trim();
    if (!c) return gitDir;
    return (path.isAbsolute(c) ? undefined : this.inside(`${gitDir}/${c}`)) ?? gitDir;
  }

  packedRefs(commonDir: string): PackedRef[] {
    if (this.#packed) return this.#packed;
    const text = this.text(`${commonDir}/packed-refs`, 16 * 1024 * 1024) ?? '';
    const out: PackedRef[] = [];
    for (const line of text.split('\n')) {
      if (line.startsWith('^') && out.length > 0) out[out.length - 1]!.peeled = line.slice(1).trim();
      const m = /^([0-9a-f]{40,64}) (\S+)$/.exec(line);
      if (m) out.push({ hash: m[1]!, ref: m[2]! });
    }
    this.#packed = out;
    return out;
  }

  resolveRef(gitDir: string, commonDir: string, ref: string, depth = 0): string | undefined {
    if (depth > 5 || !/^refs\/[^\0]+$/.test(ref) || this.inside(ref) !== ref) return undefined;
    const loose = (this.text(`${gitDir}/${ref}`, SMALL) ?? this.text(`${commonDir}/${ref}`, SMALL))?.trim();
    if (loose?.startsWith('ref: '))
      return this.resolveRef(gitDir, commonDir, loose.slice(5).trim(), depth + 1);
    if (loose && HASH.test(loose)) return loose;
    return this.packedRefs(commonDir).find((r) => r.ref === ref)?.hash;
  }

  // Tags whose target commit is `commit`: packed (with their peeled value) and loose ones (an
  // annotated loose tag is a loose object naming its target; one stored in a pack file is skipped).
  async tagsAt(commonDir: string, commit: string): Promise<string[]> {
    const found = new Set<string>();
    for (const r of this.packedRefs(commonDir)) {
      if (!r.ref.startsWith('refs/tags/')) continue;
      if (r.hash === commit || r.peeled === commit) found.add(shortRef(r.ref));
    }
    for (const name of this.looseNames(`${commonDir}/refs/tags`)) {
      const hash = this.text(`${commonDir}/refs/tags/${name}`, SMALL)?.trim();
      if (!hash || !HASH.test(hash)) continue;
      if (hash === commit || (await this.looseTagTarget(commonDir, hash)) === commit) found.add(name);
    }
    return [...found].sort();
  }

  /** Regular files below `dir` (relative names), links and other kinds skipped, never followed. */
  looseNames(dir: string): string[] {
    const out: string[] = [];
    const pending = [''];
    while (pending.length > 0 && out.length < MAX_LOOSE_TAGS) {
      const sub = pending.pop()!;
      const at = sub === '' ? dir : `${dir}/${sub}`;
      for (const e of readdirInRootIfExists(this.#root, at, this.#opts) ?? []) {
        const name = sub === '' ? e.name : `${sub}/${e.name}`;
        if (e.isDirectory()) pending.push(name);
        else if (e.isFile()) out.push(name);
      }
    }
    return out;
  }

  async looseTagTarget(commonDir: string, hash: string): Promise<string | undefined> {
    const raw = this.bytes(`${commonDir}/objects/${hash.slice(0, 2)}/${hash.slice(2)}`, OBJECT_MAX);
    if (!raw) return undefined;
    try {
      const text = (await inflateAsync(raw, { maxOutputLength: OBJECT_MAX })).toString('latin1');
      if (!text.startsWith('tag ')) return undefined;
      return /^object ([0-9a-f]{40,64})$/m.exec(text.slice(text.indexOf('\0') + 1))?.[1];
    } catch {
      return undefined; // not a zlib stream, or larger than a tag object is
    }
  }
}

/** originUrl is the URL of the remote `origin` (else of the first remote) in a git config. */
function originUrl(text: string): string | undefined {
  const remotes = new Map<string, string>();
  let current: string | undefined;
  for (const line of text.split('\n')) {
    const section = /^\s*\[remote\s+"([^"]+)"\]/.exec(line);
    if (section) {
      current = section[1];
      continue;
    }
    if (/^\s*\[/.test(line)) current = undefined;
    const kv = /^\s*url\s*=\s*(.+?)\s*$/.exec(line);
    if (current && kv && !remotes.has(current)) remotes.set(current, kv[1]!);
  }
  return remotes.get('origin') ?? remotes.values().next().value;
}

function shortRef(ref: string): string {
  const parts = ref.split('/');
  return parts.length >= 3 ? parts.slice(2).join('/') : ref;
}
