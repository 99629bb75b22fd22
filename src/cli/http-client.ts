import { existsSync } from 'node:fs';
import type { KilnConfig } from '../config/config-file.ts';
import { UsageError } from '../internal/errors.ts';
import { HttpClient } from '../internal/http/client.ts';
import type { Redactor } from '../internal/redactor.ts';
import { hostCaBundlePath } from '../platform/platform-inputs.ts';
import { proxySecrets } from '../platform/proxy.ts';
import type { Settings } from './settings.ts';

// kiln's own HTTP traffic (registries, Debian archives) goes the way the user's proxy variables
// say and trusts what builds trust: the host's CA bundle (unless `trust-host-ca-certs = false`) and
// the config's `ca-certs`, plus a command's --ca-certs. One client per process, so connections
// are pooled across the registry client, mirrors and archive downloads.

const clients = new Map<string, HttpClient>();

/** httpClient returns the process's HTTP client for these settings, config and extra CA files. */
export function httpClient(
  settings: Settings,
  config: KilnConfig,
  redactor: Redactor,
  extraCaFiles: readonly string[] = [],
): HttpClient {
  const caFiles: string[] = [];
  if (config.trustHostCaCerts) {
    // A machine without a bundle trusts Node's own roots, as builds then trust the image's.
    const host = hostCaBundlePath(settings.env);
    if (existsSync(host)) caFiles.push(host);
  }
  caFiles.push(...config.caCerts, ...extraCaFiles);
  // Keyed by what decides a route too: in-process runs (tests) may differ in their proxy variables.
  const proxyVars = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'].flatMap((n) => [
    settings.env[n],
    settings.env[n.toLowerCase()],
  ]);
  const key = JSON.stringify([caFiles, proxyVars]);
  let c = clients.get(key);
  if (c === undefined) {
    // Proxy passwords never reach an error message or a debug line.
    for (const s of proxySecrets(settings.env as Record<string, string>)) redactor.add(s);
    try {
      c = new HttpClient({ env: settings.env, caFiles, redact: (text) => redactor.redact(text) });
    } catch (e) {
      // A proxy variable that is not a URL: the message names the variable, never its value.
      throw new UsageError((e as Error).message);
    }
    clients.set(key, c);
  }
  return c;
}
