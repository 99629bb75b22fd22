import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, opendir, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../oci/digest.ts';
import type { SourceFacts } from './provenance.ts';

// What the provenance names as the source: a digest of the app tree as the build sees it (after
// include/exclude, links recorded not followed), and, for a git checkout, the remote and commit.

/** Which app files the build sees (platform/source-filter.ts has this shape). */
export interface TreeFilter {
  includes(rel: string, isDir: boolean): boolean;
  mayContain(rel: string): boolean;
}

/**
 * treeDigest hashes the tree under `dir`: one line per entry in byte order
 * (`<type> <mode> <path> <sha256 or link target>`), so a changed, added or removed file changes it.
 */
export async function treeDigest(dir: string, filter?: TreeFilter): Promise<Digest> {
  const h = createHash('sha256');
  const walk = async (rel: string): Promise<void> => {
    const names: string[] = [];
    for await (const e of await opendir(path.join(dir, rel))) names.push(e.name);
    names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const full = path.join(dir, r);
      const st = await lstat(full);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        if (filter && !filter.mayContain(r)) continue;
        if (!filter || filter.includes(r, true)) h.update(`d ${mode} ${JSON.stringify(r)}\n`);
        await walk(r);
      } else if (filter && !filter.includes(r, false)) {
      } else if (st.isSymbolicLink()) {
        h.update(`l ${mode} ${JSON.stringify(r)} ${JSON.stringify(await readlink(full))}\n`);
      } else if (st.isFile()) {
        h.update(`f ${mode} ${JSON.stringify(r)} ${await fileSha256(full)}\n`);
      }
    }
  };
  await walk('');
  return `sha256:${h.digest('hex')}`;
}

async function fileSha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c as Buffer);
  return h.digest('hex');
}

/** withoutCredentials drops user:password from a URL (a remote may carry a token). */
export function withoutCredentials(url: string): string {
  const u = URL.parse(url);
  if (!u || (u.username === '' && u.password === '')) {
    // scp-like `user@host:path` carries a user name only, no secret: kept as written.
    return url;
  }
  u.username = '';
  u.password = '';
  return u.href;
}

function git(dir: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    // Only plumbing that reads refs and config: no command that runs hooks or fsmonitor.
    execFile(
      'git',
      ['-c', 'core.fsmonitor=false', '-C', dir, ...args],
      {
        timeout: 10_000,
        maxBuffer: 1 << 16,
        env: { PATH: '/usr/local/bin:/usr/bin:/bin', GIT_CONFIG_NOSYSTEM: '1' },
      },
      (err, stdout) => resolve(err ? undefined : stdout.trim()),
    );
  });
}

/** gitFacts reads the checkout `dir` is in (remote origin URL and HEAD), or undefined. */
export async function gitFacts(dir: string): Promise<SourceFacts['git']> {
  const out = await git(dir, ['rev-parse', 'HEAD', '--show-prefix']);
  if (!out) return undefined;
  const [commit, prefix = ''] = out.split('\n');
  if (!commit || !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(commit)) return undefined;
  const remote = (await git(dir, ['config', '--get', 'remote.origin.url'])) ?? '';
  return {
    repository: withoutCredentials(remote || `file://${path.resolve(dir)}`),
    commit,
    path: prefix.replace(/\/$/, ''),
  };
}

/** sourceFacts is the provenance's source of the app in `dir`. */
export async function sourceFacts(dir: string, filter?: TreeFilter): Promise<SourceFacts> {
  const [digest, g] = await Promise.all([treeDigest(dir, filter), gitFacts(dir)]);
  return { treeDigest: digest, ...(g ? { git: g } : {}) };
}
