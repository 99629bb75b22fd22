import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { statIfExists } from '../internal/fs.ts';
import { readText } from './npm-registry.ts';

// `npm config get registry` costs a Node.js start plus npm's config loading (~0.15-0.3 s) on every
// build, for an answer that almost never changes. cachedHostNpmConfigGet remembers the answer
// together with a hash of everything npm derives it from, and asks npm again as soon as any of
// that differs:
//  - the `npm` and `node` found on PATH (npm's shebang runs the first `node`, whose install prefix
//    is npm's default global prefix): resolved path, real path, size, mtime, inode; npm's own
//    package.json (its version decides the built-in default);
//  - the npmrc files npm reads: built-in (`<npm package>/npmrc`), global and user (the paths npm
//    itself reports as `globalconfig` and `userconfig`), and the project one of cwd `/` (`/.npmrc`),
//    by content;
//  - the environment npm reads: PATH, HOME, PREFIX, DESTDIR, NODE_OPTIONS, every `npm_config_*`
//    (any case), and any variable an npmrc file references as `${NAME}`.
// Credentials stay where they were: an answer with `user:password@` in the URL is never cached,
// and the cache file holds only hashes, file paths and the (credential-free) registry URL.

const VERSION = 'kiln-npm-registry-cache-v1';

/** Options of cachedHostNpmConfigGet. */
export interface HostNpmConfigOptions {
  /** kiln's environment (npm reads its `npm_config_*`, HOME and PATH from it). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Where the answer is kept (in kiln's cache dir); written atomically, mode 0600. */
  readonly cacheFile: string;
  /** The npm command (default `npm`, looked up on the env's PATH). */
  readonly npm?: string;
  readonly timeoutMs?: number;
}

/** What the cache file holds. */
interface CacheEntry {
  readonly version: string;
  /** sha256 over every input (see fingerprint). */
  readonly key: string;
  /** The npmrc files npm reads (the key covers their contents). */
  readonly files: readonly string[];
  readonly registry: string;
}

/**
 * cachedHostNpmConfigGet returns an `npmConfigGet` for resolveNpmRegistry that answers like
 * hostNpmConfigGet (`npm config get registry` outside any project, cwd `/`) but runs npm only when
 * something it depends on changed since the last answer (see above). Undefined when npm is missing
 * or fails (not cached).
 */
export function cachedHostNpmConfigGet(o: HostNpmConfigOptions): () => Promise<string | undefined> {
  const npm = o.npm ?? 'npm';
  const timeoutMs = o.timeoutMs ?? 10_000;
  return async () => {
    const cached = await readEntry(o.cacheFile);
    if (cached && (await fingerprint(o.env, npm, cached.files)).key === cached.key) return cached.registry;
    const started = Date.now();
    const answer = await runNpm(o.env, npm, timeoutMs);
    if (answer === undefined) return undefined;
    const { registry, globalconfig, userconfig } = answer;
    if (registry === undefined) return undefined;
    // Without both paths (an npm that answers differently) the inputs are unknown: no cache.
    if (globalconfig === undefined || userconfig === undefined) return registry;
    if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/@]*@/.test(registry)) return registry; // credentials: never stored
    const npmReal = await realpathOf(await which(npm, o.env));
    const files = [
      ...(npmReal ? [path.join(path.dirname(path.dirname(npmReal)), 'npmrc')] : []),
      globalconfig,
      userconfig,
      '/.npmrc',
    ];
    const fp = await fingerprint(o.env, npm, files);
    // An input that changed while npm ran may or may not be in its answer: leave it uncached.
    if (fp.newest >= started - 100) return registry;
    const entry: CacheEntry = { version: VERSION, key: fp.key, files, registry };
    try {
      await writeFileAtomic(o.cacheFile, `${JSON.stringify(entry)}\n`, 0o600);
    } catch {
      // A read-only cache dir only costs the next build another npm run.
    }
    return registry;
  };
}

async function readEntry(file: string): Promise<CacheEntry | undefined> {
  try {
    const e = JSON.parse(await readFile(file, 'utf8')) as Partial<CacheEntry>;
    if (
      e.version === VERSION &&
      typeof e.key === 'string' &&
      typeof e.registry === 'string' &&
      Array.isArray(e.files) &&
      e.files.every((f) => typeof f === 'string')
    )
      return e as CacheEntry;
  } catch {
    // missing or damaged: ask npm
  }
  return undefined;
}

/** The three values npm is asked for, from `npm config get registry globalconfig userconfig`. */
interface NpmAnswer {
  readonly registry?: string;
  readonly globalconfig?: string;
  readonly userconfig?: string;
}

function runNpm(
  env: Readonly<Record<string, string | undefined>>,
  npm: string,
  timeoutMs: number,
): Promise<NpmAnswer | undefined> {
  return new Promise((resolve) => {
    execFile(
      npm,
      ['config', 'get', 'registry', 'globalconfig', 'userconfig'],
      { cwd: '/', env: env as NodeJS.ProcessEnv, timeout: timeoutMs, encoding: 'utf8' },
      (err, stdout) => resolve(err ? undefined : parseAnswer(stdout)),
    );
  });
}

/** parseAnswer reads npm's `key=value` lines; a lone line (an npm that prints values only) is the registry. */
export function parseAnswer(stdout: string): NpmAnswer | undefined {
  const lines = stdout.split(/\r?\n/).filter((l) => l.trim() !== '');
  const out: Record<string, string> = {};
  for (const l of lines) {
    const m = /^(registry|globalconfig|userconfig)=(.*)$/.exec(l);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  if (out.registry === undefined) {
    const only = lines.length === 1 ? lines[0]!.trim() : '';
    return only ? { registry: only } : undefined;
  }
  const clean = (v: string | undefined) => (v === undefined || v === '' || v === 'undefined' ? undefined : v);
  return {
    registry: out.registry,
    ...(clean(out.globalconfig) !== undefined && { globalconfig: out.globalconfig }),
    ...(clean(out.userconfig) !== undefined && { userconfig: out.userconfig }),
  };
}

/**
 * fingerprint hashes every input of npm's answer; `newest` is the latest change time (ms) among
 * the files and binaries it looked at.
 */
async function fingerprint(
  env: Readonly<Record<string, string | undefined>>,
  npm: string,
  files: readonly string[],
): Promise<{ key: string; newest: number }> {
  const h = createHash('sha256');
  let newest = 0;
  const put = (k: string, v: string | undefined) => h.update(`${k}\0${v ?? '\u0001unset'}\0`);
  put('version', VERSION);
  put('npm', npm);
  const envKeys = new Set(['PATH', 'HOME', 'PREFIX', 'DESTDIR', 'NODE_OPTIONS']);
  for (const k of Object.keys(env)) if (/^npm_config_/i.test(k)) envKeys.add(k);
  for (const bin of [npm, 'node']) {
    const found = await which(bin, env);
    put(`which:${bin}`, found);
    if (found === undefined) continue;
    const real = await realpathOf(found);
    put(`real:${bin}`, real);
    for (const p of [found, real]) {
      if (p === undefined) continue;
      const s = await statIfExists(p);
      put(`stat:${p}`, s ? `${s.size}:${s.mtimeMs}:${s.ino}` : undefined);
      if (s) newest = Math.max(newest, s.mtimeMs, s.ctimeMs);
    }
    if (bin === npm && real !== undefined)
      put('npm-package', await readText(path.join(path.dirname(path.dirname(real)), 'package.json')));
  }
  for (const f of files) {
    const text = await readText(f);
    put(`file:${f}`, text === undefined ? undefined : createHash('sha256').update(text).digest('hex'));
    if (text !== undefined) {
      const s = await statIfExists(f);
      if (s) newest = Math.max(newest, s.mtimeMs, s.ctimeMs);
      for (const m of text.matchAll(/\$\{([^}]+)\}/g)) envKeys.add(m[1]!);
    }
  }
  for (const k of [...envKeys].sort()) put(`env:${k}`, env[k]);
  return { key: h.digest('hex'), newest };
}

/** which finds `cmd` as execFile would: a path as is, else the first executable file on PATH. */
async function which(
  cmd: string,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string | undefined> {
  const candidates = cmd.includes('/')
    ? [path.resolve('/', cmd)]
    : (env.PATH ?? '').split(':').map((d) => path.resolve('/', d || '.', cmd));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      if ((await stat(c)).isFile()) return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function realpathOf(p: string | undefined): Promise<string | undefined> {
  if (p === undefined) return undefined;
  try {
    return await realpath(p);
  } catch {
    // A probe: a configured cache dir that does not resolve is not used.
    return undefined;
  }
}
