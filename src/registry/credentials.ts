import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { KilnError } from '../internal/errors.ts';
import { oneLine } from '../oci/schema.ts';
import { DOCKER_HUB } from './reference.ts';

/**
 * Credential for one registry. `identityToken` is an OAuth2 refresh token (docker's
 * `identitytoken`, or a helper's `<token>` user); `registryToken` is a bearer token used as is.
 */
export type Credential =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  | { readonly kind: 'identityToken'; readonly username: string; readonly token: string }
  | { readonly kind: 'registryToken'; readonly token: string };

export const ANONYMOUS: Credential = { kind: 'anonymous' };

/** Keychain finds the credential for a registry host (`index.docker.io`, `127.0.0.1:5000`). */
export interface Keychain {
  resolve(registry: string): Promise<Credential>;
}

/** anonymousKeychain never has credentials. */
export const anonymousKeychain: Keychain = { resolve: async () => ANONYMOUS };

/** staticKeychain serves fixed credentials per registry host (tests, flags). */
export function staticKeychain(byRegistry: Readonly<Record<string, Credential>>): Keychain {
  return { resolve: async (r) => byRegistry[r] ?? ANONYMOUS };
}

const DockerConfigShape = {
  parse(raw: unknown, file: string) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new KilnError(`invalid docker config ${file}: expected a JSON object`);
    const o = raw as Record<string, unknown>;
    const auths = (typeof o.auths === 'object' && o.auths !== null ? o.auths : {}) as Record<
      string,
      AuthEntry
    >;
    const credHelpers = (
      typeof o.credHelpers === 'object' && o.credHelpers !== null ? o.credHelpers : {}
    ) as Record<string, unknown>;
    const credsStore = typeof o.credsStore === 'string' && o.credsStore !== '' ? o.credsStore : undefined;
    return { auths, credHelpers, credsStore };
  },
};

/** Options of dockerConfigKeychain. `env` is the environment credential helpers run with. */
export interface DockerConfigKeychainOptions {
  /** Directory holding config.json (DOCKER_CONFIG or ~/.docker, resolved by the CLI). */
  readonly dir: string;
  /** Environment for `docker-credential-*` helpers (PATH finds them). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/**
 * dockerConfigKeychain reads credentials the way the docker CLI does: `credHelpers[host]` first,
 * then `auths` (base64 `auth`, `username`/`password`, `identitytoken`, `registrytoken`), then
 * the default `credsStore`. A missing config file means anonymous. Helper programs
 * (`docker-credential-<name> get`) receive the server URL on stdin and answer JSON on stdout.
 */
export function dockerConfigKeychain(opts: DockerConfigKeychainOptions): Keychain {
  const file = path.join(opts.dir, 'config.json');
  let loaded: Promise<ReturnType<typeof DockerConfigShape.parse> | undefined> | undefined;
  const load = () => {
    loaded ??= readFile(file, 'utf8').then(
      (text) => {
        let raw: unknown;
        try {
          raw = JSON.parse(text);
        } catch (e) {
          throw new KilnError(`invalid docker config ${file}: not JSON: ${oneLine((e as Error).message)}`);
        }
        return DockerConfigShape.parse(raw, file);
      },
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw new KilnError(`cannot read docker config ${file}: ${e.message}`);
      },
    );
    return loaded;
  };
  const cache = new Map<string, Promise<Credential>>();
  return {
    resolve(registry) {
      let p = cache.get(registry);
      if (!p) {
        p = (async () => {
          const cfg = await load();
          if (!cfg) return ANONYMOUS;
          const keys = configKeys(registry);
          for (const k of keys) {
            const helper = cfg.credHelpers[k];
            if (typeof helper === 'string' && helper !== '')
              return runHelper(helper, serverUrlFor(registry), opts.env);
          }
          for (const [k, entry] of Object.entries(cfg.auths)) {
            if (!keys.includes(normaliseConfigKey(k))) continue;
            const c = fromAuthEntry(entry, file, k);
            if (c.kind !== 'anonymous') return c;
          }
          if (cfg.credsStore) return runHelper(cfg.credsStore, serverUrlFor(registry), opts.env);
          return ANONYMOUS;
        })();
        cache.set(registry, p);
      }
      return p;
    },
  };
}

// The keys a config file may use for `registry`, normalised with normaliseConfigKey.
function configKeys(registry: string): string[] {
  if (registry === DOCKER_HUB) return [DOCKER_HUB, 'docker.io', 'registry-1.docker.io'];
  return [registry];
}

// `https://index.docker.io/v1/` → `index.docker.io`; `http://host:5000/x` → `host:5000`.
function normaliseConfigKey(k: string): string {
  const s = k.replace(/^[a-z]+:\/\//i, '');
  return s.split('/')[0]!;
}

// What credential helpers and the docker CLI call the server: Docker Hub keeps its historic URL.
function serverUrlFor(registry: string): string {
  return registry === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry;
}

// One `auths` entry of a docker config.json, as written (every field unchecked).
interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
  registrytoken?: unknown;
}

function fromAuthEntry(entry: AuthEntry | null, file: string, key: string): Credential {
  // As docker's own decoder does: null is an empty entry, anything but an object is an error.
  if (entry === null) return ANONYMOUS;
  if (typeof entry !== 'object' || Array.isArray(entry))
    throw new KilnError(
      `invalid docker config ${file}: auths[${oneLine(JSON.stringify(key))}] is not an object`,
    );
  let username = typeof entry.username === 'string' ? entry.username : '';
  let password = typeof entry.password === 'string' ? entry.password : '';
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0)
      throw new KilnError(
        `invalid docker config ${file}: auths[${oneLine(JSON.stringify(key))}].auth is not base64 of user:password`,
      );
    username = decoded.slice(0, i);
    password = decoded.slice(i + 1);
  }
  let c: Credential = ANONYMOUS;
  if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '')
    c = { kind: 'identityToken', username, token: entry.identitytoken };
  else if (typeof entry.registrytoken === 'string' && entry.registrytoken !== '')
    c = { kind: 'registryToken', token: entry.registrytoken };
  else if (username !== '' || password !== '') c = { kind: 'basic', username, password };
  return c;
}

/**
 * runHelper runs `docker-credential-<name> get` with the server URL on stdin. "Not found" answers
 * (exit 1 with "credentials not found") mean anonymous; other failures are errors that name the
 * helper but never echo its output (it may contain the secret).
 */
async function runHelper(
  name: string,
  serverUrl: string,
  env: Readonly<Record<string, string | undefined>> | undefined,
): Promise<Credential> {
  if (!/^[A-Za-z0-9._-]+$/.test(name))
    throw new KilnError(`invalid credential helper name ${oneLine(JSON.stringify(name))}`);
  const program = `docker-credential-${name}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      const child = spawn(program, ['get'], {
        stdio: ['pipe', 'pipe', 'pipe'],
        ...(env ? { env: env as NodeJS.ProcessEnv } : {}),
      });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (out.length < 1 << 20) out += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (err.length < 4096) err += d;
      });
      child.on('error', (e: NodeJS.ErrnoException) =>
        reject(
          new KilnError(
            e.code === 'ENOENT'
              ? `credential helper ${program} not found on PATH (named in docker config)`
              : `credential helper ${program} failed to start: ${e.message}`,
          ),
        ),
      );
      child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
      child.stdin.on('error', () => {}); // helper may exit before reading stdin
      child.stdin.end(serverUrl);
    },
  );
  if (code !== 0) {
    if (/credentials not found|not found in native keychain/i.test(stdout + stderr)) return ANONYMOUS;
    throw new KilnError(`credential helper ${program} failed for ${serverUrl} (exit ${code})`);
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(stdout) as typeof parsed;
  } catch {
    throw new KilnError(`credential helper ${program} answered something other than JSON for ${serverUrl}`);
  }
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  if (secret === '' && username === '') return ANONYMOUS;
  // Docker's convention: the user `<token>` means the secret is an identity (refresh) token.
  if (username === '<token>') return { kind: 'identityToken', username, token: secret };
  return { kind: 'basic', username, password: secret };
}

/**
 * registryAuthKeychain reads the platform spec's `CNB_REGISTRY_AUTH`: a JSON object of registry →
 * Authorization header value (`Basic <base64 user:password>` or `Bearer <token>`), as CI systems
 * (GitHub Actions, GitLab CI, Tekton) set it. A registry it names gets that credential; any other
 * goes to `fallback` (the docker config and its credential helpers), so CNB_REGISTRY_AUTH wins,
 * as in the lifecycle. Errors name the registry, never the value.
 */
export function registryAuthKeychain(json: string, fallback: Keychain): Keychain {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new KilnError('CNB_REGISTRY_AUTH is not JSON: expected {"registry": "Basic …" | "Bearer …"}');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new KilnError('CNB_REGISTRY_AUTH: expected a JSON object of registry → Authorization header');
  const byRegistry = new Map<string, Credential>();
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const host = normaliseConfigKey(key);
    const registry = host === 'docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host;
    byRegistry.set(registry, headerCredential(value, host));
  }
  return { resolve: (r) => Promise.resolve(byRegistry.get(r) ?? fallback.resolve(r)) };
}

/** headerCredential turns an Authorization header value into a Credential (the value is never shown). */
function headerCredential(value: unknown, registry: string): Credential {
  const bad = (why: string) => new KilnError(`CNB_REGISTRY_AUTH entry for ${registry}: ${why}`);
  if (typeof value !== 'string') throw bad('expected a string (an Authorization header value)');
  const m = /^(\S+)\s+(\S+)$/.exec(value.trim());
  if (!m) throw bad('expected "Basic <base64>" or "Bearer <token>"');
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'bearer') return { kind: 'registryToken', token: m[2]! };
  if (scheme !== 'basic') throw bad(`unsupported scheme (expected Basic or Bearer)`);
  const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) throw bad('the Basic value is not base64 of user:password');
  return { kind: 'basic', username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
