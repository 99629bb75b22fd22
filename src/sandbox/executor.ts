/**
 * The sandbox contract: everything kiln runs that is not kiln itself (buildpack detect and build,
 * exec.d, `kiln run`) goes through an Executor. The spec is complete and explicit — no host
 * environment variable, directory or credential reaches the process unless it is named here —
 * so the executor can be swapped (bubblewrap on a workstation, host when kiln already runs inside
 * the build image) without the callers changing.
 */

import type { IsolatedNetwork } from './network.ts';

/** A host directory (or file) made visible inside the sandbox at `dst`. */
export interface Mount {
  readonly src: string;
  readonly dst: string;
  readonly readonly: boolean;
}

/** Where a stream of the sandboxed process goes: line callback, kiln's own fd, or nowhere. */
export type OutputSink = ((line: string) => void) | 'inherit' | 'ignore';

/** Resource limits. Only lowering is possible (the kiln process may lack CAP_SYS_RESOURCE). */
export interface Limits {
  /** RLIMIT_NPROC of the sandbox user: bounds fork bombs (counted per uid, so concurrent builds share it). */
  readonly processes?: number;
  /** RLIMIT_NOFILE. */
  readonly openFiles?: number;
  /** RLIMIT_FSIZE: largest single file the process may write (SIGXFSZ/EFBIG beyond). */
  readonly fileSizeBytes?: number;
  /** Size of each tmpfs (e.g. /tmp); writing past it fails with ENOSPC instead of filling host memory. */
  readonly tmpfsBytes?: number;
}

/** One process to run in the sandbox. */
export interface RunSpec {
  /** argv[0] is looked up by the sandbox's own exec (an absolute path is safest). */
  readonly argv: readonly string[];
  /** The complete environment of the process: nothing from kiln's environment is added (only PWD = cwd). */
  readonly env: Readonly<Record<string, string>>;
  /** Working directory inside the sandbox (absolute). */
  readonly cwd: string;
  readonly uid: number;
  readonly gid: number;
  /** Root filesystem (a directory on the host), mounted read-only at `/`. */
  readonly rootfs: string;
  readonly mounts: readonly Mount[];
  /**
   * `none` leaves only a loopback interface of the sandbox's own; `host` shares kiln's network;
   * an IsolatedNetwork (SandboxNetwork.attachment, see network.ts) runs the process in that
   * network namespace: outbound access through slirp4netns, nothing of the host.
   */
  readonly network: 'none' | 'host' | IsolatedNetwork;
  /** Writable in-memory directories (default `['/tmp']`). */
  readonly tmpfs?: readonly string[];
  /** Stdin: a file descriptor or stream kiln owns, `inherit`, or nothing (default). */
  readonly stdin?: 'inherit' | 'ignore';
  readonly stdout?: OutputSink;
  readonly stderr?: OutputSink;
  /** Stop the process (SIGTERM, then SIGKILL after `graceMs`) after this long. */
  readonly timeoutMs?: number;
  /** Abort stops the process; a reason that is a signal name (e.g. 'SIGINT') is forwarded as is. */
  readonly signal?: AbortSignal;
  /** How long a stopped process gets between the polite signal and SIGKILL (default 5000). */
  readonly graceMs?: number;
  readonly limits?: Limits;
  /** uid 0 is refused unless this is set (buildpacks must never run as root). */
  readonly allowRoot?: boolean;
  /** Hostname inside the sandbox's UTS namespace. */
  readonly hostname?: string;
}

/** How the process ended, plus plain-language notes on limits it ran into. */
export interface RunResult {
  /** Exit status, or 128 + signal number when a signal ended it (as a shell reports it). */
  readonly exitCode: number;
  /** The signal that ended the process, if any. */
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  /** e.g. "/tmp is full (64 MiB tmpfs): No space left on device" — for the build report. */
  readonly notes: readonly string[];
}

/** Runs processes in some kind of isolation. */
export interface Executor {
  readonly name: string;
  run(spec: RunSpec): Promise<RunResult>;
}

/**
 * Files a rootfs gets as empty mount points so that, with the host network, the sandbox can bind
 * the host's name resolution over them (images do not carry them; container runtimes add them).
 */
export const NETWORK_FILES: readonly string[] = ['/etc/resolv.conf', '/etc/hosts'];

/** The sandbox paths the CNB phases use; a rootfs must have these as directories to mount on. */
export const MOUNT_POINTS: readonly string[] = [
  '/workspace',
  '/layers',
  '/cnb',
  '/platform',
  '/tmp',
  '/proc',
  '/dev',
  '/home',
];
