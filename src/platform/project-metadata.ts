import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { inflate } from 'node:zlib';
import type { ProjectMetadata } from '../cnb/lifecycle-metadata.ts';
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
  metadata: { refs: string[]; url: string };
};

/** gitMetadata reads HEAD, its branch, the tags on it and the origin URL of a git checkout. */
export async function gitMetadata(appDir: string): Promise<GitSource | undefined> {
  const gitDir = await findGitDir(appDir);
  if (!gitDir) return undefined;
  const commonDir = await readCommonDir(gitDir);
  const head = (await readText(path.join(gitDir, 'HEAD')))?.trim();
  if (!head) return undefined;
  let branchRef: string | undefined;
  let commit: string | undefined;
  if (head.startsWith('ref: ')) {
    branchRef = head.slice(5).trim();
    commit = await resolveRef(gitDir, commonDir, branchRef);
  } else if (/^[0-9a-f]{40,64}$/.test(head)) {
    commit = head;
  }
  if (!commit) return undefined; // an empty repository: no commit yet
  const tags = await tagsAt(commonDir, commit);
  const refs = [branchRef ? shortRef(branchRef) : '', ...tags];
  return {
    type: 'git',
    version: { commit, describe: tags[0] ?? commit },
    metadata: { refs, url: stripCredentials((await originUrl(commonDir)) ?? '') },
  };
}

/** stripCredentials removes `user:password@` from a URL (and leaves anything else as is). */
export function stripCredentials(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@]*@/, '$1');
}

async function readText(p: string): Promise<string | undefined> {
  try {
    return await readFile(p, 'utf8');
  } catch {
    return undefined;
  }
}

async function findGitDir(appDir: string): Promise<string | undefined> {
  const dotGit = path.join(appDir, '.git');
  try {
    const st = await stat(dotGit);
    if (st.isDirectory()) return dotGit;
    // A worktree or submodule: `.git` is a file saying `gitdir: <path>`.
    const m = /^gitdir:\s*(.+)$/m.exec((await readText(dotGit)) ?? '');
    return m ? path.resolve(appDir, m[1]!.trim()) : undefined;
  } catch {
    return undefined;
  }
}

async function readCommonDir(gitDir: string): Promise<string> {
  const c = (await readText(path.join(gitDir, 'commondir')))?.trim();
  return c ? path.resolve(gitDir, c) : gitDir;
}

async function packedRefs(commonDir: string): Promise<Array<{ ref: string; hash: string; peeled?: string }>> {
  const text = (await readText(path.join(commonDir, 'packed-refs'))) ?? '';
  const out: Array<{ ref: string; hash: string; peeled?: string }> = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('^') && out.length > 0) out[out.length - 1]!.peeled = line.slice(1).trim();
    const m = /^([0-9a-f]{40,64}) (\S+)$/.exec(line);
    if (m) out.push({ hash: m[1]!, ref: m[2]! });
  }
  return out;
}

async function resolveRef(
  gitDir: string,
  commonDir: string,
  ref: string,
  depth = 0,
): Promise<string | undefined> {
  if (depth > 5) return undefined;
  const loose = (
    (await readText(path.join(gitDir, ref))) ?? (await readText(path.join(commonDir, ref)))
  )?.trim();
  if (loose?.startsWith('ref: ')) return resolveRef(gitDir, commonDir, loose.slice(5).trim(), depth + 1);
  if (loose && /^[0-9a-f]{40,64}$/.test(loose)) return loose;
  return (await packedRefs(commonDir)).find((r) => r.ref === ref)?.hash;
}

// Tags whose target commit is `commit`: packed (with their peeled value) and loose ones (an
// annotated loose tag is a loose object naming its target; one stored in a pack file is skipped).
async function tagsAt(commonDir: string, commit: string): Promise<string[]> {
  const found = new Set<string>();
  for (const r of await packedRefs(commonDir)) {
    if (!r.ref.startsWith('refs/tags/')) continue;
    if (r.hash === commit || r.peeled === commit) found.add(shortRef(r.ref));
  }
  const tagDir = path.join(commonDir, 'refs', 'tags');
  let names: string[] = [];
  try {
    names = (await readdir(tagDir, { recursive: true })) as string[];
  } catch {}
  for (const name of names) {
    const hash = (await readText(path.join(tagDir, name)))?.trim();
    if (!hash || !/^[0-9a-f]{40,64}$/.test(hash)) continue;
    if (hash === commit || (await looseTagTarget(commonDir, hash)) === commit) found.add(name);
  }
  return [...found].sort();
}

async function looseTagTarget(commonDir: string, hash: string): Promise<string | undefined> {
  try {
    const raw = await readFile(path.join(commonDir, 'objects', hash.slice(0, 2), hash.slice(2)));
    const text = (await inflateAsync(raw)).toString('latin1');
    if (!text.startsWith('tag ')) return undefined;
    return /^object ([0-9a-f]{40,64})$/m.exec(text.slice(text.indexOf('\0') + 1))?.[1];
  } catch {
    return undefined;
  }
}

async function originUrl(commonDir: string): Promise<string | undefined> {
  const text = (await readText(path.join(commonDir, 'config'))) ?? '';
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
