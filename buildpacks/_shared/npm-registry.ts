import { join } from 'node:path';
import { bindingRoot, bindingsOfType } from './bindings.ts';
import { readTextIfExists } from './fsutil.ts';
import type { JsonAnswer } from './http.ts';

/**
 * NpmRegistry is the npm registry the user configured. kiln never assumes a registry host: the
 * platform passes `npm_config_registry` (kiln's CLI forwards the host's npm configuration) or a
 * binding of type `npmrc` supplies an `.npmrc`.
 */
export interface NpmRegistry {
  /** Registry base URL, always ending in `/`. */
  readonly url: string;
  /** Bearer token for the registry, only ever taken from a binding. */
  readonly token?: string;
  /** Path of the bound `.npmrc`, handed to npm as its user config. */
  readonly npmrc?: string;
}

/** parseNpmrc reads `key=value` lines of an npmrc (comments and blank lines skipped). */
export function parseNpmrc(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    out.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

/** tokenFor finds `//host/path/:_authToken` for the registry URL (longest matching prefix wins). */
function tokenFor(npmrc: Map<string, string>, registryUrl: string): string | undefined {
  const bare = registryUrl.replace(/^https?:/, '');
  let best: { len: number; token: string } | undefined;
  for (const [key, value] of npmrc) {
    if (!key.endsWith(':_authToken')) continue;
    const prefix = key.slice(0, -':_authToken'.length);
    if (
      bare.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`) &&
      (!best || prefix.length > best.len)
    ) {
      best = { len: prefix.length, token: value };
    }
  }
  return best?.token;
}

/** withSlash normalises a registry URL to end in `/`. */
function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/**
 * npmRegistry resolves the registry: `npm_config_registry` in the environment, then an npmrc
 * binding's `registry`, then the app's own `.npmrc` (which npm itself reads too); undefined when
 * none says.
 */
export async function npmRegistry(
  env: NodeJS.ProcessEnv,
  platformDir: string,
  appDir?: string,
): Promise<NpmRegistry | undefined> {
  let npmrcPath: string | undefined;
  let npmrc = new Map<string, string>();
  for (const binding of await bindingsOfType(bindingRoot(env, platformDir), 'npmrc')) {
    for (const file of ['.npmrc', 'npmrc']) {
      const path = join(binding.path, file);
      const text = await readTextIfExists(path);
      if (text !== undefined) {
        npmrcPath = path;
        npmrc = parseNpmrc(text);
        break;
      }
    }
    if (npmrcPath) break;
  }
  const fromEnv = env.npm_config_registry || env.NPM_CONFIG_REGISTRY;
  const appNpmrc = appDir
    ? parseNpmrc((await readTextIfExists(join(appDir, '.npmrc'))) ?? '')
    : new Map<string, string>();
  const url = fromEnv || npmrc.get('registry') || appNpmrc.get('registry');
  if (!url) return undefined;
  const normal = withSlash(url);
  const token = tokenFor(npmrc, normal);
  return { url: normal, ...(token ? { token } : {}), ...(npmrcPath ? { npmrc: npmrcPath } : {}) };
}

/** NO_REGISTRY explains how to configure a registry when none is set. */
export const NO_REGISTRY =
  'no npm registry configured: set the build variable npm_config_registry (kiln passes the host npm ' +
  'configuration by default) or add a service binding of type npmrc with an .npmrc';

/** PackumentVersion is the part of a registry version document kiln's buildpacks read. */
export interface PackumentVersion {
  readonly version: string;
  readonly engines?: Readonly<Record<string, string>>;
  readonly dist: { readonly tarball: string; readonly integrity?: string; readonly shasum?: string };
}

/** Packument is the part of a package's registry document kiln's buildpacks read. */
export interface Packument {
  readonly versions: Readonly<Record<string, PackumentVersion>>;
  readonly 'dist-tags'?: Readonly<Record<string, string>>;
}

/** packumentUrl is where the registry serves the document of package `name`. */
export function packumentUrl(registry: NpmRegistry, name: string): string {
  return `${registry.url}${name.replace('/', '%2F')}`;
}

/**
 * slimPackument keeps what the buildpacks read (per version: version, engines, dist tarball,
 * integrity and shasum; the dist-tags) and checks the shape, so a cached copy stays small.
 */
export function slimPackument(doc: unknown, url: string): Packument {
  const versions = (doc as { versions?: unknown } | null)?.versions;
  if (!doc || typeof doc !== 'object' || !versions || typeof versions !== 'object') {
    throw new Error(`${url}: registry answer has no versions`);
  }
  const out: Record<string, PackumentVersion> = {};
  for (const [key, raw] of Object.entries(versions as Record<string, unknown>)) {
    const v = raw as { version?: unknown; engines?: unknown; dist?: Record<string, unknown> } | null;
    const dist = v?.dist;
    if (!dist || typeof dist.tarball !== 'string') continue;
    const engines =
      v.engines && typeof v.engines === 'object' && !Array.isArray(v.engines)
        ? Object.fromEntries(
            Object.entries(v.engines as Record<string, unknown>).filter(([, r]) => typeof r === 'string'),
          )
        : undefined;
    out[key] = {
      version: typeof v.version === 'string' ? v.version : key,
      ...(engines && Object.keys(engines).length ? { engines: engines as Record<string, string> } : {}),
      dist: {
        tarball: dist.tarball,
        ...(typeof dist.integrity === 'string' ? { integrity: dist.integrity } : {}),
        ...(typeof dist.shasum === 'string' ? { shasum: dist.shasum } : {}),
      },
    };
  }
  const tags = (doc as { 'dist-tags'?: unknown })['dist-tags'];
  return {
    versions: out,
    ...(tags && typeof tags === 'object'
      ? {
          'dist-tags': Object.fromEntries(
            Object.entries(tags as Record<string, unknown>).filter(([, t]) => typeof t === 'string'),
          ) as Record<string, string>,
        }
      : {}),
  };
}

/**
 * requestPackument asks the registry for a package's (abbreviated) metadata; `validators` are the
 * conditional request headers (If-None-Match, If-Modified-Since) of a cached copy. The HTTP client
 * (and with it TLS) is loaded only here, so a build answered from the cache never loads it.
 */
export async function requestPackument(
  registry: NpmRegistry,
  name: string,
  env: NodeJS.ProcessEnv,
  validators: Readonly<Record<string, string>> = {},
): Promise<JsonAnswer> {
  const { getJsonConditional } = await import('./http.ts');
  return getJsonConditional(packumentUrl(registry, name), {
    env,
    headers: {
      accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8',
      ...validators,
      ...authHeaders(registry),
    },
  });
}

/** authHeaders are the request headers for downloads from the registry. */
export function authHeaders(registry: NpmRegistry): Record<string, string> {
  return registry.token ? { authorization: `Bearer ${registry.token}` } : {};
}
