import { join } from 'node:path';
import { applyEnvOp, envFiles } from '../cnb/launch-env.ts';
import { isDir } from '../internal/fs.ts';
import { childOf, type InRootFile, inRoot, lstatInRoot } from '../internal/safe-read.ts';

/** How `/cnb/build-config` of a builder is named in errors; its files are the builder's, untrusted. */
const BUILD_CONFIG = {
  what: "the builder's /cnb/build-config directory",
  shown: '/cnb/build-config',
} as const;

/**
 * Variables a buildpack inherits from the base environment (the build image's config env plus
 * the user's proxy settings), exactly the reference lifecycle's allowlist. Everything else is
 * dropped: the environment is built from scratch.
 */
export const BUILD_ENV_ALLOWLIST: readonly string[] = [
  'CNB_STACK_ID',
  'HOSTNAME',
  'HOME',
  'HTTPS_PROXY',
  'https_proxy',
  'HTTP_PROXY',
  'http_proxy',
  'NO_PROXY',
  'no_proxy',
];

/** Build-time layer root dirs and the path variables they are prepended to (POSIX build env). */
export const BUILD_ROOT_DIRS: readonly (readonly [string, readonly string[]])[] = [
  ['bin', ['PATH']],
  ['include', ['CPATH']],
  ['lib', ['LD_LIBRARY_PATH', 'LIBRARY_PATH']],
  ['pkgconfig', ['PKG_CONFIG_PATH']],
];

const PATH_VARS = new Set(BUILD_ROOT_DIRS.flatMap(([, v]) => v));

/** An env-file action; no suffix takes the caller's default. */
export type EnvAction = 'override' | 'default' | 'prepend' | 'append';

/**
 * BuildEnv is the environment buildpacks run with during detect and build, as the reference
 * lifecycle builds it: an allowlist of the base env, then earlier buildpacks' build layers
 * (root dirs prepended, then `env/` and `env.build/` files), and, per exec, `<platform>/env`
 * and `<build-config>/env` on top (see `forExec`).
 */
export class BuildEnv {
  readonly #vars: Map<string, string>;

  constructor(vars: Map<string, string>) {
    this.#vars = vars;
  }

  /**
   * fromBase keeps the allowlisted variables and the five path variables of `base`, then sets
   * `extra` unfiltered: variables the platform itself decided every buildpack gets (e.g.
   * `SSL_CERT_FILE` for extra CA certificates), which layers and platform env may still change.
   */
  static fromBase(
    base: Readonly<Record<string, string | undefined>>,
    extra?: Readonly<Record<string, string>>,
  ): BuildEnv {
    const vars = new Map<string, string>();
    for (const [k, v] of Object.entries(base)) {
      if (v === undefined) continue;
      if (BUILD_ENV_ALLOWLIST.includes(k) || PATH_VARS.has(k)) vars.set(k, v);
    }
    for (const [k, v] of Object.entries(extra ?? {})) vars.set(k, v);
    return new BuildEnv(vars);
  }

  get(name: string): string {
    return this.#vars.get(name) ?? '';
  }

  /** list returns a copy of the variables. */
  list(): Record<string, string> {
    return Object.fromEntries([...this.#vars].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /**
   * addRootDir prepends a layer's `bin`, `lib`, `include` and `pkgconfig` dirs (when they exist
   * on the host at `hostDir`) to their variables, using their path inside the sandbox.
   */
  async addRootDir(hostDir: string | InRootFile, sandboxDir: string): Promise<void> {
    for (const [dir, names] of BUILD_ROOT_DIRS) {
      if (typeof hostDir === 'string') {
        if (!(await isDir(join(hostDir, dir)))) continue;
      } else {
        // A link (`bin -> node/bin`) is the buildpack's to resolve inside the sandbox: the variable
        // only names the sandbox path, so kiln never follows it on the host to decide.
        const f = childOf(hostDir, dir);
        const st = lstatInRoot(f.root, f.rel, f);
        if (!st?.isDirectory() && !st?.isSymbolicLink()) continue;
      }
      for (const name of names) {
        const old = this.get(name);
        this.#vars.set(name, `${sandboxDir}/${dir}${old === '' ? '' : `:${old}`}`);
      }
    }
  }

  /**
   * addEnvDir applies an env dir (files `NAME[.action]`, raw contents) with the given default
   * action; `check` vets each file before it is read.
   */
  async addEnvDir(
    dir: string | InRootFile,
    defaultAction: EnvAction,
    check?: (path: string) => Promise<void>,
  ): Promise<void> {
    await applyEnvDir(this.#vars, dir, defaultAction, check);
  }

  /**
   * forExec returns the environment for one buildpack process: these variables, then
   * `<platformDir>/env/*` unless the buildpack has `clear-env` (path variables prepended with
   * ":", others overridden; contents never evaluated), then `<buildConfigDir>/env/*` with env-file
   * rules where no suffix means `default`.
   */
  async forExec(
    platformDir: string | undefined,
    buildConfigDir: string | undefined,
  ): Promise<Map<string, string>> {
    const vars = new Map(this.#vars);
    if (platformDir) {
      for (const f of await envFiles(join(platformDir, 'env'))) {
        if (PATH_VARS.has(f.name)) {
          const old = vars.get(f.name) ?? '';
          vars.set(f.name, f.value + (old === '' ? '' : `:${old}`));
        } else {
          vars.set(f.name, f.value);
        }
      }
    }
    if (buildConfigDir) await applyEnvDir(vars, inRoot(buildConfigDir, 'env', BUILD_CONFIG), 'default');
    return vars;
  }
}

/**
 * applyEnvDir applies the env files of one dir, in name order, the way the lifecycle does:
 * prepend/append use the `NAME.delim` file's raw content as separator, or none at all when
 * there is no `.delim` file; an empty old value adds no separator; unknown suffixes are ignored.
 */
export async function applyEnvDir(
  vars: Map<string, string>,
  dir: string | InRootFile,
  defaultAction: EnvAction,
  check?: (path: string) => Promise<void>,
): Promise<void> {
  const files = await envFiles(dir, check);
  const delims = new Map(
    files.filter((f) => f.name.endsWith('.delim')).map((f) => [f.name.slice(0, -6), f.value]),
  );
  for (const f of files) {
    const dot = f.name.indexOf('.');
    const name = dot < 0 ? f.name : f.name.slice(0, dot);
    const action = dot < 0 ? defaultAction : f.name.slice(dot + 1);
    switch (action) {
      case 'override':
      case 'default':
      case 'prepend':
      case 'append':
        applyEnvOp(vars, { name, op: action, value: f.value, delim: delims.get(name) ?? '' });
        break;
      case '': {
        // `NAME.` (empty suffix): the lifecycle's prepend-path action, ":" unless a .delim says otherwise.
        const old = vars.get(name) ?? '';
        vars.set(name, old === '' ? f.value : f.value + (delims.get(name) ?? ':') + old);
        break;
      }
    }
  }
}
