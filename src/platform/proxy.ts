import type { Redactor } from '../internal/redactor.ts';

// Proxies. The buildpack spec lets the lifecycle pass HTTP_PROXY, HTTPS_PROXY and
// NO_PROXY (either case) from its own environment to buildpacks. kiln takes them from its
// environment, overridden by the user's --env, and gives them to detect and build only: they go
// into the process environment of the sandbox, never into `<platform>/env` files that the
// exporter could see, never into the image config.

/** The proxy variables the spec lets through, in both cases. */
export const PROXY_VARS: readonly string[] = [
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
];

/**
 * proxyEnv picks the proxy variables from kiln's environment and the user's --env (which wins for
 * the same name). When only one case of a variable is set the other case gets the same value:
 * curl reads only lower-case `http_proxy`, other tools only upper-case names, and a build should not
 * depend on which one the user happened to export.
 */
export function proxyEnv(
  kilnEnv: Readonly<Record<string, string | undefined>>,
  userEnv: Readonly<Record<string, string | undefined>> = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of PROXY_VARS) {
    const v = userEnv[k] ?? kilnEnv[k];
    if (v !== undefined && v !== '') out[k] = v;
  }
  for (const upper of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) {
    const lower = upper.toLowerCase();
    if (out[upper] !== undefined && out[lower] === undefined) out[lower] = out[upper];
    if (out[lower] !== undefined && out[upper] === undefined) out[upper] = out[lower];
  }
  return out;
}

/** proxySecrets returns the credentials inside proxy URLs (`http://user:password@proxy:3128`). */
export function proxySecrets(env: Readonly<Record<string, string>>): string[] {
  const out = new Set<string>();
  for (const k of PROXY_VARS) {
    const v = env[k];
    if (!v || k.toLowerCase() === 'no_proxy') continue;
    const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/@]*)@/.exec(v) ?? /^([^/@:]+:[^/@]*)@/.exec(v);
    if (!m) continue;
    const userinfo = m[1]!;
    const colon = userinfo.indexOf(':');
    if (colon < 0) continue;
    const password = userinfo.slice(colon + 1);
    if (password === '') continue;
    out.add(password);
    out.add(safeDecode(password));
    out.add(userinfo);
  }
  return [...out];
}

/** registerProxySecrets gives proxy passwords to the redactor. */
export function registerProxySecrets(env: Readonly<Record<string, string>>, redactor: Redactor): void {
  for (const s of proxySecrets(env)) redactor.add(s);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    // A malformed %-escape is kept as typed, as curl does.
    return s;
  }
}
