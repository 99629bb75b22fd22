import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import type { ApiVersion } from '../cnb/api.ts';
import { inPhase, KilnError, UsageError } from '../internal/errors.ts';
import type { Logger } from '../internal/log.ts';
import type { Executor, Limits, Mount, RunResult, RunSpec } from '../sandbox/executor.ts';
import type { BuildpackDescriptor, BuildpackStore } from './buildpack-store.ts';
import { type Deadline, LimitError, type ProcessLabel } from './deadline.ts';
import type { BuildEnv } from './env.ts';
import { type RunTarget, targetEnv } from './target.ts';

/** Where the phase directories appear inside the sandbox (the platform spec's defaults). */
export interface SandboxPaths {
  readonly app: string;
  readonly layers: string;
  readonly platform: string;
  readonly buildpacks: string;
}

/** The spec's default sandbox paths. Pass the host paths themselves with the host executor. */
export const DEFAULT_SANDBOX_PATHS: SandboxPaths = {
  app: '/workspace',
  layers: '/layers',
  platform: '/platform',
  buildpacks: '/cnb/buildpacks',
};

/** Collaborators and inputs shared by the detect and build phases. */
export interface PhaseOptions {
  readonly buildpackStore: BuildpackStore;
  /** Host directories. */
  readonly appDir: string;
  readonly platformDir: string;
  readonly layersDir: string;
  /** `/cnb/build-config` on the host, if the builder has one (its env/ applies to every buildpack). */
  readonly buildConfigDir?: string;
  readonly executor: Executor;
  /** The build image's root filesystem on the host (`/` with the host executor). */
  readonly rootfs: string;
  /** `none`, `host`, or the build's isolated network (SandboxNetwork.attachment). */
  readonly network: RunSpec['network'];
  readonly sandboxPaths?: SandboxPaths;
  /** The run image target (analyzed.toml `[run-image.target]`), completed by resolveRunTarget. */
  readonly target: RunTarget;
  /** CNB_EXEC_ENV (Buildpack API 0.12+); default `production`. */
  readonly execEnv?: string;
  readonly platformApi?: ApiVersion;
  readonly logger: Logger;
  /**
   * The environment buildpacks start from: the build image's config env plus the user's proxy
   * settings (never kiln's own environment). Only the lifecycle allowlist survives.
   */
  readonly baseEnv: Readonly<Record<string, string | undefined>>;
  /**
   * Variables every buildpack process gets on top of the filtered base env, unfiltered (CA
   * bundle variables, `SERVICE_BINDING_ROOT`). Never put credentials here: buildpacks see them.
   */
  readonly extraEnv?: Readonly<Record<string, string>>;
  /** The build user (CNB_USER_ID/CNB_GROUP_ID); 0 is refused. */
  readonly uid: number;
  readonly gid: number;
  /**
   * The build user's ids on the host (sandbox RunSpec.hostIds; owner of what kiln hands it):
   * leased by the platform for a build. Default uid:gid.
   */
  readonly hostIds?: { readonly uid: number; readonly gid: number };
  readonly limits?: Limits;
  readonly timeoutMs?: number;
  /** The whole build's time limit (`--timeout`): every process gets what is left of it. */
  readonly deadline?: Deadline;
  /** Further mounts for every buildpack process (e.g. the host's /usr in tests, bindings, CA bundles). */
  readonly extraMounts?: readonly Mount[];
  /**
   * Host directory for the phase's scratch files (the plans), default the OS temp dir. It must be
   * reachable by the build user; the scratch dir is mounted at the same path inside the sandbox
   * (under its tmpfs /tmp with the default), so it works with both executors.
   */
  readonly scratchRoot?: string;
  /**
   * The umask buildpack processes start with (the reference lifecycle's containers use 022): the
   * same source must give the same layers whatever kiln's own umask is. Default kiln's.
   */
  readonly umask?: number;
}

/** sandboxPathsOf returns the sandbox paths in use. */
export function sandboxPathsOf(o: PhaseOptions): SandboxPaths {
  return o.sandboxPaths ?? DEFAULT_SANDBOX_PATHS;
}

/** layersPathInSandbox maps a host path under the layers dir to its path inside the sandbox. */
export function layersPathInSandbox(o: PhaseOptions, hostPath: string): string {
  const rel = relative(o.layersDir, hostPath);
  return rel === '' ? sandboxPathsOf(o).layers : `${sandboxPathsOf(o).layers}/${rel}`;
}

/** buildpackDirInSandbox is where a buildpack's directory appears in the sandbox. */
export function buildpackDirInSandbox(o: PhaseOptions, bp: BuildpackDescriptor): string {
  return `${sandboxPathsOf(o).buildpacks}/${bp.relativeDir}`;
}

/** mountsFor lists the phase mounts: app (writable only during build), layers, platform, buildpacks, scratch. */
export function mountsFor(o: PhaseOptions, appWritable: boolean, scratch?: Mount): Mount[] {
  const p = sandboxPathsOf(o);
  return [
    ...(o.extraMounts ?? []),
    { src: o.appDir, dst: p.app, readonly: !appWritable },
    { src: o.layersDir, dst: p.layers, readonly: false },
    { src: o.platformDir, dst: p.platform, readonly: true },
    { src: o.buildpackStore.root, dst: p.buildpacks, readonly: true },
    ...(scratch ? [scratch] : []),
  ];
}

/**
 * cnbEnv returns the CNB_* variables a buildpack process gets on top of its build env, gated by
 * the buildpack's API as the reference lifecycle gates them.
 */
export function cnbEnv(
  o: PhaseOptions,
  bp: BuildpackDescriptor,
  extra: { planKey: 'CNB_BUILD_PLAN_PATH' | 'CNB_BP_PLAN_PATH'; planPath: string; layersDir?: string },
): Record<string, string> {
  const env: Record<string, string> = { CNB_BUILDPACK_DIR: buildpackDirInSandbox(o, bp) };
  if (bp.api.atLeast('0.8')) {
    env.CNB_PLATFORM_DIR = sandboxPathsOf(o).platform;
    env[extra.planKey] = extra.planPath;
    if (extra.layersDir) env.CNB_LAYERS_DIR = extra.layersDir;
  }
  if (bp.api.atLeast('0.10')) Object.assign(env, targetEnv(o.target));
  if (bp.api.atLeast('0.12')) env.CNB_EXEC_ENV = execEnvOf(o);
  return env;
}

/** processEnv merges the build env (with platform/build-config overrides) and the CNB_* variables. */
export async function processEnv(
  o: PhaseOptions,
  env: BuildEnv,
  bp: BuildpackDescriptor,
  cnb: Record<string, string>,
): Promise<Record<string, string>> {
  const vars = await env.forExec(bp.clearEnv ? undefined : o.platformDir, o.buildConfigDir);
  for (const [k, v] of Object.entries(cnb)) vars.set(k, v);
  return Object.fromEntries(vars);
}

/** specOf is the sandbox run of one buildpack executable, but for its time limit. */
function specOf(
  o: PhaseOptions,
  argv: string[],
  env: Record<string, string>,
  appWritable: boolean,
  onLine: (line: string) => void,
  scratch?: Mount,
): RunSpec {
  return {
    argv,
    env,
    cwd: sandboxPathsOf(o).app,
    uid: o.uid,
    gid: o.gid,
    ...(o.hostIds ? { hostIds: o.hostIds } : {}),
    rootfs: o.rootfs,
    mounts: mountsFor(o, appWritable, scratch),
    network: o.network,
    ...(o.umask !== undefined ? { umask: o.umask } : {}),
    stdout: onLine,
    stderr: onLine,
    ...(o.limits ? { limits: o.limits } : {}),
  };
}

/**
 * prepareSandbox lets the executor get ready for the phases' first buildpack process while kiln
 * does other work (restore): best effort, in the background; nothing runs.
 */
export function prepareSandbox(o: PhaseOptions): void {
  void o.executor.prepare?.(specOf(o, ['/bin/true'], {}, true, () => {}));
}

/**
 * runInSandbox runs one buildpack executable with the phase's mounts, user and limits, and says at
 * debug level how long it took (where a slow build's time goes, `kiln -v build`). A limit that
 * stopped the process (memory, disk, the build's deadline) throws a LimitError naming `label`.
 */
export async function runInSandbox(
  o: PhaseOptions,
  argv: string[],
  env: Record<string, string>,
  appWritable: boolean,
  onLine: (line: string) => void,
  scratch?: Mount,
  label?: ProcessLabel,
): Promise<RunResult> {
  const t0 = performance.now();
  const who = label ?? { buildpack: argv[0] ?? '?', phase: appWritable ? 'build' : 'detect' };
  // The deadline binds when it leaves less time than the per-process timeout; then there is no
  // grace period: the build is over, and a stopped process would never honour SIGTERM anyway.
  const left = o.deadline?.remainingMs();
  if (o.deadline && left === 0) throw o.deadline.stopped(who);
  const byDeadline = left !== undefined && (o.timeoutMs === undefined || left < o.timeoutMs);
  const r = await o.executor.run({
    ...specOf(o, argv, env, appWritable, onLine, scratch),
    ...(byDeadline ? { timeoutMs: left, graceMs: 0 } : { timeoutMs: o.timeoutMs }),
  });
  o.logger.debug(`${argv[0]}: exit ${r.exitCode} after ${(performance.now() - t0).toFixed(0)} ms`);
  // Other limits it ran into on the way (e.g. a fork bomb's process limit) go on the same line.
  const also = r.notes.filter((n) => !n.startsWith('stopped after'));
  const more = also.length > 0 ? ` (${also.join('; ')})` : '';
  if (r.timedOut && byDeadline && o.deadline) {
    const e = o.deadline.stopped(who);
    throw new LimitError(`${e.message}${more}`, who);
  }
  if (r.limit !== undefined)
    throw new LimitError(`buildpack ${who.buildpack} (${who.phase}) was stopped: ${r.limit}${more}`, who);
  return r;
}

/** A phase's scratch dir on the host and where the sandbox sees it. */
export interface Scratch {
  readonly dir: string;
  readonly sandboxDir: string;
  readonly mount: Mount;
}

/**
 * makeScratch creates a root-owned (when kiln is root), world-readable scratch dir outside the
 * layers dir for the phase's plan files. Buildpacks cannot create, rename or replace entries in
 * it, so kiln never writes through a symlink a buildpack planted. The sandbox sees it under /tmp
 * (its tmpfs, where a mount point can always be made); with the default scratch root that is
 * the host path itself, as the host executor requires.
 */
export async function makeScratch(o: PhaseOptions, phase: string): Promise<Scratch> {
  const dir = await mkdtemp(join(o.scratchRoot ?? tmpdir(), `kiln-${phase}-`));
  await chmod(dir, 0o755);
  const sandboxDir = join('/tmp', basename(dir));
  return { dir, sandboxDir, mount: { src: dir, dst: sandboxDir, readonly: phase !== 'detect' } };
}

/**
 * startPhase begins detect or build: it refuses a root build user (a failure of the phase) and an
 * invalid CNB_EXEC_ENV (a usage error) before anything runs, then makes the phase's scratch dir.
 */
export async function startPhase(o: PhaseOptions, phase: 'detect' | 'build'): Promise<Scratch> {
  if (o.uid === 0)
    throw new KilnError(
      `${phase}: refusing to run buildpacks as root (uid 0): set a non-root build user`,
    ).inPhase(phase);
  execEnvOf(o);
  return makeScratch(o, phase);
}

/**
 * phaseError is what a failure of a phase becomes: a KilnError keeps its message and gets the
 * phase; anything else (an fs error, a bug) is wrapped with the phase's name before its message.
 */
export function phaseError(phase: 'detect' | 'build', err: unknown): KilnError {
  return inPhase(phase, err, phase);
}

/** removeScratch deletes a scratch dir. */
export async function removeScratch(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
}

/** chownToUser gives a path kiln created to the build user's host ids (only possible, and needed, as root). */
export async function chownToUser(o: PhaseOptions, path: string): Promise<void> {
  if (process.getuid?.() === 0) await chown(path, o.hostIds?.uid ?? o.uid, o.hostIds?.gid ?? o.gid);
}

/** execEnvOf returns CNB_EXEC_ENV (default `production`); a `/` in it is an invalid argument (exit 3). */
export function execEnvOf(o: PhaseOptions): string {
  const v = o.execEnv || 'production';
  if (v.includes('/')) throw new UsageError(`exec-env "${v}" must not contain "/"`);
  return v;
}
