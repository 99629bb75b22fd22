import { createHmac, timingSafeEqual } from 'node:crypto';

// What arrives at serve's hook endpoints is a hint, never a fact: a registry notification or a git
// push names a repository, and serve then asks the registry (HEAD) or git (ls-remote) itself. A
// forged or replayed hook can at most cause a check. Git hooks must still carry the shared secret
// (GitHub's HMAC signature, GitLab's token, Gitea's signature) or they are refused.

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Which forge sent a git hook, by its headers. */
export type Forge = 'github' | 'gitlab' | 'gitea';

/**
 * verifyGitHook checks a git push hook's shared secret; returns the forge, or a reason to refuse.
 * Headers are lower-case (node's http).
 */
export function verifyGitHook(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  body: Buffer,
  secret: string,
): { ok: true; forge: Forge } | { ok: false; why: string } {
  const h = (n: string) => {
    const v = headers[n];
    return Array.isArray(v) ? v[0] : v;
  };
  const hmac = () => createHmac('sha256', secret).update(body).digest('hex');
  const gitea = h('x-gitea-signature') ?? h('x-gogs-signature');
  if (gitea !== undefined)
    return equal(gitea.toLowerCase(), hmac())
      ? { ok: true, forge: 'gitea' }
      : { ok: false, why: 'bad Gitea signature' };
  const gh = h('x-hub-signature-256');
  if (gh !== undefined)
    return equal(gh.toLowerCase(), `sha256=${hmac()}`)
      ? { ok: true, forge: 'github' }
      : { ok: false, why: 'bad GitHub signature' };
  const gl = h('x-gitlab-token');
  if (gl !== undefined)
    return equal(gl, secret) ? { ok: true, forge: 'gitlab' } : { ok: false, why: 'bad GitLab token' };
  return { ok: false, why: 'no X-Hub-Signature-256, X-Gitlab-Token or X-Gitea-Signature header' };
}

/** gitHookRepositories lists the repository URLs a push payload names (GitHub, GitLab, Gitea shapes). */
export function gitHookRepositories(payload: unknown): string[] {
  const out = new Set<string>();
  const add = (v: unknown) => {
    if (typeof v === 'string' && v.length > 0 && v.length < 2048) out.add(v);
  };
  const p = (payload ?? {}) as Record<string, unknown>;
  for (const k of ['repository', 'project']) {
    const r = p[k];
    if (r !== null && typeof r === 'object') {
      const o = r as Record<string, unknown>;
      for (const f of [
        'clone_url',
        'ssh_url',
        'git_url',
        'html_url',
        'url',
        'git_http_url',
        'git_ssh_url',
        'web_url',
        'homepage',
      ])
        add(o[f]);
    }
  }
  return [...out];
}

/** normalizeRepoUrl makes URLs of one repository compare equal (scheme, user, `.git`, case of host). */
export function normalizeRepoUrl(url: string): string {
  let s = url.trim();
  // scp-like ssh: git@host:owner/repo
  const scp = /^[\w.-]+@([\w.-]+):(?!\/)(.+)$/.exec(s);
  if (scp) s = `${scp[1]}/${scp[2]}`;
  else {
    try {
      const u = new URL(s);
      s =
        u.protocol === 'file:'
          ? decodeURIComponent(u.pathname)
          : `${u.hostname.toLowerCase()}${u.port ? `:${u.port}` : ''}${u.pathname}`;
    } catch {
      // A plain path (a local repository).
    }
  }
  return s
    .replace(/\/+$/, '')
    .replace(/\.git$/, '')
    .replace(/\/+$/, '');
}

/**
 * registryPushes lists the repositories (path, without the host: registries are reached under
 * several names) of the push events in a Docker Distribution notification envelope.
 */
export function registryPushes(payload: unknown): string[] {
  const events = (payload as { events?: unknown } | null)?.events;
  if (!Array.isArray(events)) return [];
  const out = new Set<string>();
  for (const e of events.slice(0, 1000)) {
    const ev = e as {
      action?: unknown;
      target?: { repository?: unknown; mediaType?: unknown; url?: unknown };
    };
    if (ev?.action !== 'push' || typeof ev.target?.repository !== 'string') continue;
    // Blob pushes come first and change no tag: only manifest pushes name a new image.
    const t = ev.target;
    if (
      t.mediaType === 'application/octet-stream' ||
      (typeof t.url === 'string' && t.url.includes('/blobs/'))
    )
      continue;
    if (ev.target.repository.length < 512) out.add(ev.target.repository);
  }
  return [...out];
}
