import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { errnoOf, isAbsent, KilnError } from '../internal/errors.ts';
import { stripCredentials } from './project-metadata.ts';

// The npm registry builds use. kiln's Node.js buildpacks run npm inside the sandbox,
// where the host's npm configuration does not exist; a user whose host npm points at a mirror
// expects builds to use it too. kiln passes it as `npm_config_registry` in the build environment.
// Only the registry URL crosses over: auth tokens (`_authToken`, `_auth`, passwords) never come from
// the host — they come only from a binding of type `npmrc`, which the buildpack reads itself.
//
// Precedence, first match wins:
//  1. `--env npm_config_registry=...` (any case): the user said so; kiln adds nothing.
//  2. the app's own `.npmrc` sets `registry`: npm inside the build reads it and would rank it
//     below an env var, so kiln adds nothing rather than override the project.
//  3. `npm_config_registry` (any case) in kiln's own environment.
//  4. `npm-registry` in kiln's config file.
//  5. the host npm configuration: `npm config get registry` run outside any project (user,
//     global and built-in npmrc), or when npm is not installed, `$NPM_CONFIG_USERCONFIG` or
//     `~/.npmrc`, then `/etc/npmrc`.
// Whatever the host answers is passed, npm's own default included: kiln's Node.js buildpacks never
// assume a registry host, and kiln names none either.

/** Where the registry for builds came from (for a debug line). */
export type NpmRegistrySource = 'flag' | 'project' | 'env' | 'config' | 'host-npm' | 'npmrc' | 'none';

/** Inputs of resolveNpmRegistry; the CLI resolves them (library code reads no environment). */
export interface NpmRegistryInputs {
  /** The user's --env / --env-file values. */
  readonly userEnv: Readonly<Record<string, string | undefined>>;
  /** kiln's own environment. */
  readonly kilnEnv: Readonly<Record<string, string | undefined>>;
  /** `npm-registry` from kiln's config. */
  readonly configured?: string | undefined;
  /** The app directory (its `.npmrc` is checked). */
  readonly appDir: string;
  /** The user's home directory (for ~/.npmrc). */
  readonly home: string;
  /** Runs `npm config get registry` on the host; undefined when npm is unavailable. */
  readonly npmConfigGet?: () => Promise<string | undefined>;
  /** Global npmrc files to try when npm is unavailable (default ['/etc/npmrc']). */
  readonly globalNpmrc?: readonly string[];
}

/** The registry decision: `env` is what to add to the build environment (maybe nothing). */
export interface NpmRegistry {
  readonly env: Readonly<Record<string, string>>;
  readonly registry: string | undefined;
  readonly source: NpmRegistrySource;
  /** Credentials found in a registry URL (removed from it): for the Redactor. */
  readonly secrets: readonly string[];
}

/** resolveNpmRegistry decides the `npm_config_registry` for builds (precedence above). */
export async function resolveNpmRegistry(i: NpmRegistryInputs): Promise<NpmRegistry> {
  const fromUser = lookupCaseless(i.userEnv, 'npm_config_registry');
  if (fromUser !== undefined) return { env: {}, registry: fromUser, source: 'flag', secrets: [] };
  const project = registryFromNpmrc((await readText(path.join(i.appDir, '.npmrc'))) ?? '', i.kilnEnv);
  if (project !== undefined) return { env: {}, registry: project, source: 'project', secrets: [] };
  const candidates: Array<[NpmRegistrySource, () => Promise<string | undefined>]> = [
    ['env', async () => lookupCaseless(i.kilnEnv, 'npm_config_registry')],
    ['config', async () => i.configured],
    ['host-npm', async () => (i.npmConfigGet ? await i.npmConfigGet() : undefined)],
    [
      'npmrc',
      async () => {
        if (i.npmConfigGet) return undefined; // npm answered (or failed) with the full picture already
        const user =
          i.kilnEnv.NPM_CONFIG_USERCONFIG ?? i.kilnEnv.npm_config_userconfig ?? path.join(i.home, '.npmrc');
        for (const f of [user, ...(i.globalNpmrc ?? ['/etc/npmrc'])]) {
          const r = registryFromNpmrc((await readText(f)) ?? '', i.kilnEnv);
          if (r !== undefined) return r;
        }
        return undefined;
      },
    ],
  ];
  for (const [source, get] of candidates) {
    const raw = (await get())?.trim();
    if (!raw || raw === 'undefined' || raw === 'null') continue;
    const registry = normalize(stripCredentials(raw));
    const userinfo = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/@]*)@/.exec(raw)?.[1];
    const secrets = userinfo ? [userinfo, userinfo.slice(userinfo.indexOf(':') + 1)] : [];
    return { env: { npm_config_registry: registry }, registry, source, secrets };
  }
  return { env: {}, registry: undefined, source: 'none', secrets: [] };
}

/**
 * registryFromNpmrc returns the unscoped `registry` of an npmrc text, with `${VAR}` expanded from
 * `env` as npm does; scoped (`@scope:registry`) and auth lines are ignored.
 */
export function registryFromNpmrc(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  let found: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^registry\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let v = m[1]!.trim();
    if (/^".*"$/.test(v)) v = v.slice(1, -1);
    found = v.replace(/\$\{([^}]+)\}/g, (_, name: string) => env[name] ?? '');
  }
  return found === '' ? undefined : found;
}

function normalize(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

function lookupCaseless(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  for (const [k, v] of Object.entries(env))
    if (k.toLowerCase() === name && v !== undefined && v !== '') return v;
  return undefined;
}

/** readText is a file's text, or undefined when it is absent; an unreadable file is an error naming it. */
export async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if (isAbsent(e)) return undefined;
    throw new KilnError(`cannot read ${file} (${errnoOf(e) ?? (e as Error).message})`, { cause: e });
  }
}

/**
 * hostNpmConfigGet returns an `npmConfigGet` for resolveNpmRegistry that runs
 * `npm config get registry` on the host, outside any project (cwd `/`), with a time limit;
 * undefined when npm is missing or fails. `env` is kiln's environment (npm reads its
 * `npm_config_*` and HOME from it).
 */
export function hostNpmConfigGet(
  env: Readonly<Record<string, string | undefined>>,
  npm = 'npm',
  timeoutMs = 10_000,
): () => Promise<string | undefined> {
  return () =>
    new Promise((resolve) => {
      execFile(
        npm,
        ['config', 'get', 'registry'],
        { cwd: '/', env: env as NodeJS.ProcessEnv, timeout: timeoutMs, encoding: 'utf8' },
        (err, stdout) => resolve(err ? undefined : stdout.trim() || undefined),
      );
    });
}
