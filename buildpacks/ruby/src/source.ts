import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bindingRoot, bindingsOfType } from '../../_shared/bindings.ts';
import { exists } from '../../_shared/fsutil.ts';
import { BuildpackFailure } from '../../_shared/main.ts';

// Where bundler fetches gems from. In order:
//  1. a binding of type `bundler` (or Paketo's `bundle-config`) holding `config`: a bundler config
//     file (mirrors, `BUNDLE_<HOST>` credentials) passed as BUNDLE_USER_CONFIG where it is mounted,
//     never copied: the only place for credentials;
//  2. BUNDLE_MIRROR__ALL / BUNDLE_MIRROR__<SOURCE> in the build environment (bundler reads them
//     itself): https, or plain http to this machine, without credentials;
//  3. neither: the Gemfile's own `source` (rubygems.org for most apps).

/** GemSource is what bundler's environment gets, a log description and a digest for the layer key. */
export interface GemSource {
  readonly env: Readonly<Record<string, string>>;
  readonly describe: string;
  readonly digest: string;
}

/** mirrorUrl checks a BUNDLE_MIRROR__* value: https (or http to loopback), no credentials. */
export function mirrorUrl(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new BuildpackFailure(`kiln/ruby: ${name} "${raw}" is not a URL`);
  }
  if (url.username || url.password)
    throw new BuildpackFailure(
      `kiln/ruby: ${name} must not carry credentials: put them in the config of a bundler binding`,
    );
  const local = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && local))
    throw new BuildpackFailure(
      `kiln/ruby: ${name} must be an https URL (plain http only to 127.0.0.1), not ${url.protocol}//${url.host}`,
    );
  return url.href;
}

export async function gemSource(env: NodeJS.ProcessEnv, platformDir: string): Promise<GemSource> {
  const root = bindingRoot(env, platformDir);
  const bindings = [
    ...(await bindingsOfType(root, 'bundler')),
    ...(await bindingsOfType(root, 'bundle-config')),
  ];
  if (bindings.length > 1)
    throw new BuildpackFailure(
      `kiln/ruby: ${bindings.length} bindings of type bundler (${bindings.map((b) => b.name).join(', ')}); give one`,
    );
  const mirrors = Object.keys(env)
    .filter((k) => /^BUNDLE_MIRROR__/i.test(k))
    .sort()
    .map((k) => [k, mirrorUrl(k, env[k] ?? '')] as const);
  const hash = createHash('sha256').update(mirrors.map(([k, v]) => `${k}=${v}`).join('\n'));
  const binding = bindings[0];
  if (binding) {
    const config = join(binding.path, 'config');
    if (!(await exists(config)))
      throw new BuildpackFailure(`kiln/ruby: the bundler binding ${binding.name} has no config entry`);
    // Only a digest of the binding's contents (it may hold credentials) goes into the layer key.
    hash.update('\nbinding\n').update(await readFile(config));
    return {
      env: { BUNDLE_USER_CONFIG: config },
      describe: `the config of the bundler binding ${binding.name}`,
      digest: hash.digest('hex'),
    };
  }
  return {
    env: {},
    describe: mirrors.length
      ? mirrors.map(([k, v]) => `${v} (${k})`).join(', ')
      : "the Gemfile's sources (set BUNDLE_MIRROR__ALL or a bundler binding for a mirror)",
    digest: hash.digest('hex'),
  };
}
