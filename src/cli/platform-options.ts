import { copyFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config/config-file.ts';
import { mirrorForSuite, readAptSources } from '../debian/sources.ts';
import type { Redactor } from '../internal/redactor.ts';
import { type Binding, checkUniqueNames, parseBindingFlag, readBindingDir } from '../platform/bindings.ts';
import { type CaCert, readCaCertFile, readSystemCaBundle, writeCaLaunchLayer } from '../platform/ca-certs.ts';
import { type NpmRegistry, resolveNpmRegistry } from '../platform/npm-registry.ts';
import { cachedHostNpmConfigGet } from '../platform/npm-registry-cache.ts';
import { hostCaBundlePath, type PlatformInputs, preparePlatformInputs } from '../platform/platform-inputs.ts';
import type { Logger } from './logger.ts';
import type { Settings } from './settings.ts';

// The `kiln build` platform flags (service bindings, extra CA certificates, proxies, the npm
// registry) and their resolution with kiln's config and environment into the platform inputs of
// one build. For the build command: `addPlatformOptions(cmd)`, then `platformSetup(...)` before the build starts
// (flag and file errors surface before any phase runs), then `setup.prepare(...)` where the
// orchestration fills `<platform>`; merge its `env` into the detect/build process env and its
// `mounts` into the sandbox mounts.

/** The flags addPlatformOptions adds, as commander parses them. */
export interface PlatformFlags {
  readonly binding?: readonly string[];
  readonly caCerts?: readonly string[];
  readonly caCertsLaunch?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** addPlatformOptions adds --binding, --ca-certs and --ca-certs-launch to a command. */
export function addPlatformOptions(cmd: Command): Command {
  return cmd
    .option(
      '--binding <NAME=DIR>',
      'service binding for detect and build: DIR holds type, provider?, one file per secret (repeatable)',
      collect,
    )
    .option(
      '--ca-certs <file>',
      'extra CA certificates (PEM) trusted by detect and build, not by the image (repeatable)',
      collect,
    )
    .option(
      '--ca-certs-launch',
      'also trust the --ca-certs certificates at runtime: adds a launch layer (listed in the SBOM); the host bundle stays build-only',
    );
}

/** One build's platform inputs, validated up front. */
export interface PlatformSetup {
  /** The run's redactor (the Logger's), holding every secret of this build. */
  readonly redactor: Redactor;
  readonly bindings: readonly Binding[];
  readonly npmRegistry: NpmRegistry;
  /** Whether --ca-certs-launch was given (the orchestration then calls `launchLayer`). */
  readonly caCertsLaunch: boolean;
  /**
   * prepare fills `platformDir` (env files, bindings, ca-certificates binding) and returns the
   * process env and sandbox mounts for detect and build. `rootfs` is the build image's root
   * filesystem (its CA bundle is merged with the extra certificates).
   */
  /** `stageDir` is kiln-private scratch for the merged CA bundle (default: `platform-stage` beside `platformDir`). */
  prepare(
    platformDir: string,
    uid: number,
    gid: number,
    rootfs: string,
    stageDir?: string,
  ): Promise<PlatformInputs>;
  /**
   * launchLayer writes the --ca-certs-launch layer at `<layersDir>/kiln_ca-certificates/ca-certificates`
   * (+ .toml, + .sbom.cdx.json) after prepare; the exporter adds it as a launch layer.
   */
  launchLayer(layersDir: string, layersMount?: string): Promise<string | undefined>;
}

/** Inputs of platformSetup. */
export interface PlatformSetupOptions {
  readonly flags: PlatformFlags;
  readonly settings: Settings;
  readonly log: Logger;
  /** The app directory (its `.npmrc` is honoured). */
  readonly appDir: string;
  /** `<platform>/env` values (project.toml env, --env-file, --env; later wins). */
  readonly env: Readonly<Record<string, string>>;
  /** The user's --env / --env-file values alone. */
  readonly userEnv: Readonly<Record<string, string>>;
}

/** platformSetup resolves flags, config and environment; bad bindings or CA files fail here. */
export async function platformSetup(o: PlatformSetupOptions): Promise<PlatformSetup> {
  const redactor = o.log.redactor;
  const config = await loadConfig(o.settings.configFile);
  const cwd = process.cwd();
  const bindings: Binding[] = [];
  for (const f of o.flags.binding ?? []) {
    const b = parseBindingFlag(f, cwd);
    bindings.push(await readBindingDir(b.name, b.dir));
  }
  checkUniqueNames(bindings);
  const caCertFiles = [...config.caCerts, ...(o.flags.caCerts ?? []).map((f) => path.resolve(cwd, f))];
  // Host trust is on by default; a machine without a bundle (no ca-certificates package, an
  // SSL_CERT_FILE that points nowhere) builds with the build image's own bundle instead of failing.
  let hostCaBundle = config.trustHostCaCerts ? hostCaBundlePath(o.settings.env) : undefined;
  if (hostCaBundle !== undefined && !(await isFile(hostCaBundle))) {
    o.log.debug(`host CA bundle ${hostCaBundle} not found: builds trust the build image's bundle only`);
    hostCaBundle = undefined;
  }
  const hostCerts = hostCaBundle !== undefined ? await readSystemCaBundle(hostCaBundle) : [];
  const known = new Set(hostCerts.map((c) => c.fingerprint));
  // Parsed now so a bad file fails before the build, naming it; these (not the host bundle, which
  // is trusted by default and stays build-only) are what --ca-certs-launch ships.
  const userCerts: CaCert[] = [];
  for (const f of caCertFiles) userCerts.push(...(await readCaCertFile(f, known)));
  const home = o.settings.env.HOME ?? '';
  const npmRegistry = await resolveNpmRegistry({
    userEnv: o.userEnv,
    kilnEnv: o.settings.env,
    configured: config.npmRegistry,
    appDir: o.appDir,
    home,
    // npm's answer is cached in kiln's cache dir, keyed on every input npm derives it from.
    npmConfigGet: cachedHostNpmConfigGet({
      env: o.settings.env,
      cacheFile: path.join(o.settings.cacheDir, 'npm-registry.json'),
    }),
  });
  if (npmRegistry.env.npm_config_registry)
    o.log.debug(`npm registry for builds: ${npmRegistry.registry} (from ${npmRegistry.source})`);
  // The stack's Debian archive for buildpacks that install Debian packages (the same overrides
  // as `kiln stack create`: KILN_DEBIAN_MIRROR / config debian-mirror, KILN_DEBIAN_SECURITY_MIRROR,
  // else the machine's apt sources; the keyring the stack verifies with).
  const apt = await readAptSources().catch(() => []);
  const nonEmpty = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
  const debianArchive = {
    mirror: nonEmpty(o.settings.env.KILN_DEBIAN_MIRROR) ?? config.debianMirror,
    securityMirror: nonEmpty(o.settings.env.KILN_DEBIAN_SECURITY_MIRROR),
    aptMirror: (suite: string) => mirrorForSuite(apt, suite),
    keyring: nonEmpty(o.settings.env.KILN_DEBIAN_KEYRING) ?? '/usr/share/keyrings/debian-archive-keyring.gpg',
  };
  if (bindings.length) o.log.debug(`bindings: ${bindings.map((b) => `${b.name} (${b.type})`).join(', ')}`);
  let inputs: PlatformInputs | undefined;
  return {
    redactor,
    bindings,
    npmRegistry,
    caCertsLaunch: o.flags.caCertsLaunch ?? false,
    async prepare(
      platformDir,
      uid,
      gid,
      rootfs,
      stageDir = path.join(path.dirname(platformDir), 'platform-stage'),
    ) {
      inputs = await preparePlatformInputs({
        platformDir,
        stageDir,
        buildRootfs: rootfs,
        env: o.env,
        userEnv: o.userEnv,
        kilnEnv: o.settings.env,
        bindings,
        caCertFiles,
        userCerts,
        ...(hostCaBundle !== undefined && { hostCaBundle, hostCerts }),
        npmRegistry,
        debianArchive,
        redactor,
        ...(process.getuid?.() === 0 && { uid, gid }),
      });
      if (inputs.caCerts.length)
        o.log.info(
          `Trusting ${[
            caCertFiles.length ? `${caCertFiles.length} CA file(s) from --ca-certs/config` : '',
            hostCaBundle ? `the host's CA bundle ${hostCaBundle}` : '',
          ]
            .filter(Boolean)
            .join(' and ')} during the build, not in the image (${inputs.caCerts.length} certificates)`,
        );
      return inputs;
    },
    async launchLayer(layersDir, layersMount = '/layers') {
      if (!(o.flags.caCertsLaunch ?? false)) return undefined;
      if (!inputs) throw new Error('launchLayer called before prepare');
      if (userCerts.length === 0) {
        o.log.warn(
          '--ca-certs-launch: no extra CA certificates given (--ca-certs or kiln config ca-certs); no layer added',
        );
        return undefined;
      }
      const dir = path.join(layersDir, 'kiln_ca-certificates', 'ca-certificates');
      await writeCaLaunchLayer(dir, {
        certs: userCerts,
        layerPath: `${layersMount}/kiln_ca-certificates/ca-certificates`,
      });
      // The build phase copies buildpacks' <layer>.sbom.* into <layers>/sbom/launch/... while it
      // runs; this layer comes after it, so its SBOM goes there directly (the SBOM layer ships it).
      const sbomDir = path.join(layersDir, 'sbom', 'launch', 'kiln_ca-certificates', 'ca-certificates');
      await mkdir(sbomDir, { recursive: true });
      await copyFile(`${dir}.sbom.cdx.json`, path.join(sbomDir, 'sbom.cdx.json'));
      return dir;
    },
  };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    // A probe: a host bundle that is not a readable file is not used (the caller says so).
    return false;
  }
}
