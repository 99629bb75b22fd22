import { join } from 'node:path';
import { bindingRoot, bindingsOfType } from './bindings.ts';
import { exists, readTextIfExists } from './fsutil.ts';
import { getJson } from './http.ts';

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
      if (await exists(path)) {
        npmrcPath = path;
        npmrc = parseNpmrc((await readTextIfExists(path)) ?? '');
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

/** fetchPackument reads a package's (abbreviated) metadata from the registry. */
export async function fetchPackument(
  registry: NpmRegistry,
  name: string,
  env: NodeJS.ProcessEnv,
): Promise<{ versions: Record<string, PackumentVersion>; 'dist-tags'?: Record<string, string> }> {
  const url = `${registry.url}${name.replace('/', '%2F')}`;
  const doc = (await getJson(url, {
    env,
    headers: {
      accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8',
      ...(registry.token ? { authorization: `Bearer ${registry.token}` } : {}),
    },
  })) as { versions?: Record<string, PackumentVersion> };
  if (!doc || typeof doc !== 'object' || !doc.versions) {
    throw new Error(`${url}: registry answer has no versions for package ${name}`);
  }
  return doc as { versions: Record<string, PackumentVersion> };
}

/** authHeaders are the request headers for downloads from the registry. */
export function authHeaders(registry: NpmRegistry): Record<string, string> {
  return registry.token ? { authorization: `Bearer ${registry.token}` } : {};
}
