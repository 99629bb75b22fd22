/**
 * HostExecutor runs processes directly, for when kiln itself already runs inside the build image
 * (a CI job whose image is the builder, a Kubernetes pod): the container around kiln is the
 * sandbox. It keeps the same environment discipline as bubblewrap (only the spec's env, never
 * kiln's), drops to the spec's uid/gid with no supplementary groups and lowers the same limits.
 *
 * It cannot move directories, so every mount must already be at its place: `src` must equal
 * `dst` (lay the job out as /workspace, /layers, /platform, /cnb/buildpacks), and `rootfs` must
 * be `/`. It cannot take the network away either: `network: 'none'` is refused rather than
 * silently ignored.
 */
import { existsSync } from 'node:fs';
import { KilnError } from '../internal/errors.ts';
import { type HostCommand, prlimitArgs, runChild, validateSpec } from './_child.ts';
import type { Executor, RunResult, RunSpec } from './executor.ts';

/** Who kiln runs as, and where prlimit is (resolved once by the CLI). */
export interface HostExecutorOptions {
  readonly hostUid: number;
  readonly prlimit?: string;
}

/** The Executor for kiln running inside the build image itself. */
export class HostExecutor implements Executor {
  readonly name = 'host';
  // kiln already runs inside the build's container: nothing is mounted, the network is the container's.
  readonly capabilities = { mounts: false, isolatesNetwork: false } as const;
  readonly #opts: HostExecutorOptions;

  constructor(opts: HostExecutorOptions) {
    this.#opts = opts;
  }

  /** The host command line for `spec`; throws KilnError when the spec cannot be honoured here. */
  commandFor(spec: RunSpec): HostCommand {
    validateSpec(spec);
    if (spec.rootfs !== '/') {
      throw new KilnError(
        `host executor: rootfs must be "/" (kiln runs inside the build image), got "${spec.rootfs}"`,
      );
    }
    for (const m of spec.mounts) {
      if (m.src !== m.dst) {
        throw new KilnError(
          `host executor: ${m.dst} must be the directory itself, not a mount of ${m.src}: lay out the job's directories at their sandbox paths`,
        );
      }
      if (!existsSync(m.dst)) throw new KilnError(`host executor: ${m.dst} does not exist`);
    }
    if (spec.network === 'none') {
      throw new KilnError(
        'host executor: network "none" cannot be enforced without a sandbox: use the bubblewrap executor or run the job without network',
      );
    }
    if (spec.idRange || spec.capabilities?.length) {
      throw new KilnError(
        'host executor: an id range and namespace capabilities need a user namespace: use the bubblewrap executor',
      );
    }
    const o = this.#opts;
    if (o.hostUid !== 0 && o.hostUid !== spec.uid) {
      throw new KilnError(
        `host executor: kiln runs as uid ${o.hostUid} and cannot switch to uid ${spec.uid}: run the job as that user`,
      );
    }
    const limits = spec.limits ?? {};
    const rl = prlimitArgs(limits);
    const [file, ...args] = (
      rl.length > 0 ? [o.prlimit ?? '/usr/bin/prlimit', ...rl, '--', ...spec.argv] : spec.argv
    ) as [string, ...string[]];
    return {
      file,
      args,
      // PWD as bwrap sets it, so both executors give the process the same environment.
      env: { ...spec.env, PWD: spec.cwd },
      cwd: spec.cwd,
      ...(o.hostUid === 0 && spec.uid !== 0 ? { uid: spec.uid, gid: spec.gid } : {}),
      infoFd: false,
    };
  }

  async run(spec: RunSpec): Promise<RunResult> {
    return runChild(this.commandFor(spec), spec);
  }
}
