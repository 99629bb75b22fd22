import { homedir } from 'node:os';
import path from 'node:path';
import { configFilePath } from '../config/config-file.ts';
import { UsageError } from '../internal/errors.ts';

/**
 * Settings are the global flags and environment resolved once at the CLI edge. Library code never
 * reads process.env or flags; commands pass what they need from here. Extend this (with the
 * matching resolver lines below) rather than reading the environment elsewhere.
 */
export interface Settings {
  readonly verbose: boolean;
  readonly quiet: boolean;
  /** Colour on output: off with --no-color, NO_COLOR (any value) or when not on a terminal. */
  readonly color: boolean;
  /** Running in CI (`CI` set and not "false"/"0"): plain progress lines. */
  readonly ci: boolean;
  /** stderr is a terminal: progress bars allowed (unless ci). */
  readonly tty: boolean;
  /** Print stacks of unexpected errors (--verbose or KILN_DEBUG). */
  readonly debug: boolean;
  /** Registries (host or host:port) spoken to over plain HTTP (--insecure-registry, repeatable). */
  readonly insecureRegistries: readonly string[];
  /** SOURCE_DATE_EPOCH in seconds, when set: the timestamp for layers and configs. */
  readonly sourceDateEpoch: number | undefined;
  /** Directory holding the docker `config.json` (DOCKER_CONFIG or ~/.docker). */
  readonly dockerConfigDir: string;
  /** Persistent data (the local image store): KILN_HOME or $XDG_DATA_HOME/kiln (~/.local/share/kiln). */
  readonly dataDir: string;
  /** Disposable caches: KILN_HOME/cache or $XDG_CACHE_HOME/kiln (~/.cache/kiln). */
  readonly cacheDir: string;
  /** User configuration (`kiln config`): KILN_HOME/config or $XDG_CONFIG_HOME/kiln (~/.config/kiln). */
  readonly configDir: string;
  /** kiln's config file: KILN_CONFIG, else `<configDir>/config.toml` (src/config/config-file.ts). */
  readonly configFile: string;
  /**
   * The CNB directories a build uses in place with `--executor host` (kiln inside the build image):
   * CNB_APP_DIR, CNB_LAYERS_DIR, CNB_PLATFORM_DIR, CNB_BUILDPACKS_DIR, else the spec's defaults.
   */
  readonly cnbDirs: CnbDirs;
  /** The signing key's passphrase: KILN_PASSWORD, else COSIGN_PASSWORD (kiln sign, --sign-key). */
  readonly signingPassphrase: string | undefined;
  /**
   * CNB_REGISTRY_AUTH (JSON: registry → Authorization header value), when set. Its registries take
   * precedence over the docker config (credHelpers, auths, credsStore), which serves the others.
   * A secret: never logged, never passed to buildpacks.
   */
  readonly registryAuth: string | undefined;
  /** DOCKER_HOST, when set: the one Docker Engine API `docker-daemon:` and `--daemon` use. */
  readonly daemonHost: string | undefined;
  /** Sockets tried in order without DOCKER_HOST: Docker's, then Podman's (rootless, then rootful). */
  readonly daemonSockets: readonly string[];
  /** The environment the settings were resolved from (for commands that pass parts on, explicitly). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** The platform's directories (the spec's `/workspace`, `/layers`, `/platform`, `/cnb/buildpacks`). */
export interface CnbDirs {
  readonly app: string;
  readonly layers: string;
  readonly platform: string;
  readonly buildpacks: string;
}

/** Global flags as commander parses them. */
export interface GlobalFlags {
  verbose?: boolean;
  quiet?: boolean;
  color?: boolean;
  insecureRegistry?: string[];
}

/** resolveSettings turns global flags and an environment into Settings. Pure; easy to test. */
export function resolveSettings(
  flags: GlobalFlags,
  env: Readonly<Record<string, string | undefined>>,
  io: { isTTY: boolean; home?: string } = { isTTY: false },
): Settings {
  const home = io.home ?? env.HOME ?? homedir();
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  const noColorEnv = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  const verbose = Boolean(flags.verbose);
  const quiet = Boolean(flags.quiet) && !verbose;
  const kilnHome = nonEmpty(env.KILN_HOME);
  const xdg = (name: string, fallback: string) => nonEmpty(env[name]) ?? path.join(home, fallback);
  const configDir = kilnHome
    ? path.join(kilnHome, 'config')
    : path.join(xdg('XDG_CONFIG_HOME', '.config'), 'kiln');
  return {
    verbose,
    quiet,
    color: flags.color !== false && !noColorEnv && io.isTTY,
    ci,
    tty: io.isTTY,
    debug: verbose || nonEmpty(env.KILN_DEBUG) !== undefined,
    insecureRegistries: [...new Set(flags.insecureRegistry ?? [])],
    sourceDateEpoch: parseEpoch(env.SOURCE_DATE_EPOCH),
    dockerConfigDir: nonEmpty(env.DOCKER_CONFIG) ?? path.join(home, '.docker'),
    dataDir: kilnHome ?? path.join(xdg('XDG_DATA_HOME', '.local/share'), 'kiln'),
    cacheDir: kilnHome ? path.join(kilnHome, 'cache') : path.join(xdg('XDG_CACHE_HOME', '.cache'), 'kiln'),
    configDir,
    configFile: configFilePath(env, configDir),
    cnbDirs: {
      app: path.resolve(nonEmpty(env.CNB_APP_DIR) ?? '/workspace'),
      layers: path.resolve(nonEmpty(env.CNB_LAYERS_DIR) ?? '/layers'),
      platform: path.resolve(nonEmpty(env.CNB_PLATFORM_DIR) ?? '/platform'),
      buildpacks: path.resolve(nonEmpty(env.CNB_BUILDPACKS_DIR) ?? '/cnb/buildpacks'),
    },
    signingPassphrase: env.KILN_PASSWORD ?? env.COSIGN_PASSWORD,
    registryAuth: nonEmpty(env.CNB_REGISTRY_AUTH),
    daemonHost: nonEmpty(env.DOCKER_HOST),
    daemonSockets: [
      '/var/run/docker.sock',
      ...(nonEmpty(env.XDG_RUNTIME_DIR) ? [path.join(env.XDG_RUNTIME_DIR!, 'podman', 'podman.sock')] : []),
      '/run/podman/podman.sock',
    ],
    env,
  };
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

function parseEpoch(s: string | undefined): number | undefined {
  if (s === undefined || s === '') return undefined;
  if (!/^\d+$/.test(s))
    throw new UsageError(`invalid SOURCE_DATE_EPOCH "${s}": expected whole seconds since 1970`);
  return Number(s);
}
