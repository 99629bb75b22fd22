import path from 'node:path';
import type { Redactor } from '../internal/redactor.ts';
import type { Mount } from '../sandbox/executor.ts';
import { type Binding, checkUniqueNames, registerBindingSecrets } from './bindings.ts';
import {
  type CaCert,
  caSecrets,
  prepareCaTrust,
  readCaCertFile,
  readSystemCaBundle,
  STANDARD_BUNDLE,
} from './ca-certs.ts';
import { type DebianArchiveChoice, debianArchiveEnv } from './debian-archive.ts';
import type { NpmRegistry } from './npm-registry.ts';
import { writePlatformDir } from './platform-dir.ts';
import { PROXY_VARS, proxyEnv, registerProxySecrets } from './proxy.ts';

/** Inputs of preparePlatformInputs: everything already resolved by the CLI (flags, env, config). */
export interface PlatformInputsOptions {
  /** Host directory to create as the platform dir (mount it read-only at `platformMount`). */
  readonly platformDir: string;
  /** kiln-private scratch directory (merged CA bundle); never exported or cached. */
  readonly stageDir: string;
  /** The build image's root filesystem on the host. */
  readonly buildRootfs: string;
  /** Build env for `<platform>/env` (project.toml env, then --env-file, then --env: later wins). */
  readonly env: Readonly<Record<string, string>>;
  /** The user's --env/--env-file values alone (for proxy and npm precedence). */
  readonly userEnv: Readonly<Record<string, string>>;
  /** kiln's own environment (proxy variables are taken from it). */
  readonly kilnEnv: Readonly<Record<string, string | undefined>>;
  /** --binding bindings, already read (readBindingDir). */
  readonly bindings: readonly Binding[];
  /** --ca-certs files plus kiln config `ca-certs`. */
  readonly caCertFiles: readonly string[];
  /** The certificates of `caCertFiles` when the caller already read them (readCaCertFile): not read again. */
  readonly userCerts?: readonly CaCert[];
  /** The host bundle path when trusted (kiln config trust-host-ca-certs; SSL_CERT_FILE or the standard path). */
  readonly hostCaBundle?: string;
  /** The certificates of `hostCaBundle` when the caller already read them (readSystemCaBundle). */
  readonly hostCerts?: readonly CaCert[];
  /** From resolveNpmRegistry. */
  readonly npmRegistry?: NpmRegistry;
  /** The Debian archive buildpacks install packages from (the stack's); none: not passed. */
  readonly debianArchive?: DebianArchiveChoice;
  readonly redactor: Redactor;
  /** The build user (owner of binding files). */
  readonly uid?: number;
  readonly gid?: number;
  /** Where the platform dir appears in the sandbox (default /platform). */
  readonly platformMount?: string;
}

/** What detect and build need from the platform inputs. */
export interface PlatformInputs {
  /** Extra read-only mounts for the sandbox (the platform dir itself is not included). */
  readonly mounts: readonly Mount[];
  /**
   * Variables to add to the detect and build process environment (on top of their base env): proxies,
   * SERVICE_BINDING_ROOT, CA variables, npm_config_registry. Never exported to the image.
   */
  readonly env: Readonly<Record<string, string>>;
  /** Names of the staged bindings. */
  readonly bindings: readonly string[];
  /** Extra certificates trusted by the build (0 without --ca-certs / host trust). */
  readonly caCerts: readonly CaCert[];
}

/**
 * preparePlatformInputs writes the platform directory (env files, bindings including the
 * generated ca-certificates binding) and returns the mounts and process env for detect and build.
 * Every secret it handles (binding entries, proxy passwords, registry URL credentials, user CA
 * files) is registered with the redactor before anything is logged.
 */
export async function preparePlatformInputs(o: PlatformInputsOptions): Promise<PlatformInputs> {
  const platformMount = o.platformMount ?? '/platform';
  const bindings: Binding[] = [...o.bindings];
  for (const b of bindings) registerBindingSecrets(b, o.redactor);

  const proxies = proxyEnv(o.kilnEnv, o.userEnv);
  registerProxySecrets(proxies, o.redactor);
  for (const s of o.npmRegistry?.secrets ?? []) o.redactor.add(s);

  // The host bundle is a system file (validated by its package manager): split, not X.509-parsed.
  const hostCerts = o.hostCaBundle ? (o.hostCerts ?? (await readSystemCaBundle(o.hostCaBundle))) : [];
  const publicCerts = new Set(hostCerts.map((c) => c.fingerprint));
  const userCerts: CaCert[] = [...(o.userCerts ?? [])];
  if (o.userCerts === undefined)
    for (const f of o.caCertFiles) userCerts.push(...(await readCaCertFile(f, publicCerts)));
  for (const line of caSecrets(userCerts, publicCerts)) o.redactor.add(line);
  const certs = [...userCerts, ...hostCerts];

  const env: Record<string, string> = { ...proxies, ...(o.npmRegistry?.env ?? {}) };
  const mounts: Mount[] = [];
  let caBundleFile: string | undefined;
  if (certs.length > 0) {
    const trust = await prepareCaTrust({
      certs,
      includesHostBundle: hostCerts.length > 0,
      buildRootfs: o.buildRootfs,
      stageDir: o.stageDir,
      platformMount,
    });
    mounts.push(...trust.mounts);
    Object.assign(env, trust.env);
    if (!bindings.some((b) => b.name === 'ca-certificates')) bindings.push(...trust.bindings);
    if (trust.mounts.length === 0) caBundleFile = trust.bundleFile;
  }
  checkUniqueNames(bindings);
  if (bindings.length > 0) env.SERVICE_BINDING_ROOT = `${platformMount}/bindings`;

  if (o.debianArchive) {
    const debian = await debianArchiveEnv(o.debianArchive, o.buildRootfs, o.platformDir, platformMount);
    // The user's own KILN_DEBIAN_* (--env) win, as with npm_config_registry.
    for (const [k, v] of Object.entries(debian.env)) if (o.userEnv[k] === undefined) env[k] = v;
    // A mirror URL may carry a login: never in a log line.
    for (const m of (debian.env.KILN_DEBIAN_SUITES ?? '').matchAll(/=[a-z]+:\/\/([^/@\s]+)@/g)) {
      const password = m[1]!.slice(m[1]!.indexOf(':') + 1);
      for (const secret of [m[1]!, password]) if (secret !== '') o.redactor.add(secret);
    }
  }

  // Proxy settings travel in the process env only (one route, and passwords stay out of files).
  const platformEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(o.env)) if (!PROXY_VARS.includes(k)) platformEnv[k] = v;
  await writePlatformDir(o.platformDir, {
    env: platformEnv,
    bindings,
    ...(caBundleFile !== undefined && { caBundleFile }),
    ...(o.uid !== undefined && { uid: o.uid }),
    ...(o.gid !== undefined && { gid: o.gid }),
  });
  return { mounts, env, bindings: bindings.map((b) => b.name), caCerts: certs };
}

/**
 * hostCaBundlePath is the host bundle to trust: SSL_CERT_FILE when set, else the standard
 * Debian/Ubuntu path. (CLI helper: pass kiln's environment.)
 */
export function hostCaBundlePath(kilnEnv: Readonly<Record<string, string | undefined>>): string {
  const f = kilnEnv.SSL_CERT_FILE;
  return f !== undefined && f !== '' ? path.resolve(f) : STANDARD_BUNDLE;
}
