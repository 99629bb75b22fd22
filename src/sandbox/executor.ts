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
  /** Memory (swap included) of the whole process tree: a cgroup where kiln can make one, else RLIMIT_DATA per process. */
  readonly memoryBytes?: number;
  /** Bytes the writable host mounts (`/layers`, `/workspace`, …) may hold together; watched, the run is stopped past it. */
  readonly diskBytes?: number;
  /** Free space kept on the host filesystem of the writable mounts: a run is refused or stopped below it. */
  readonly diskReserveBytes?: number;
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
  /**
   * The host ids the sandbox user (`uid`:`gid`) is on the host when kiln runs as root: what it
   * writes is owned by them, and they are the ids host users would need to signal or ptrace it.
   * Builds and `kiln run` pass ids leased from kiln's subordinate range (sandbox/identity.ts), so
   * no real account shares them. Absent: `uid`:`gid` themselves (`nobody` for uid 0), the
   * behaviour callers that prepared mounts owned by `uid` rely on. Ignored when kiln is not root
   * (it cannot switch ids: the sandbox user is kiln's own uid on the host).
   */
  readonly hostIds?: { readonly uid: number; readonly gid: number };
  /**
   * A range of ids instead of one: inside ids 0..count-1 are host ids hostUid..hostUid+count-1
   * (gids likewise), a block the caller leased (sandbox/identity.ts `leaseIdBlock`), never real
   * host ids. For dpkg's maintainer scripts, whose root chowns files to system users. Needs kiln
   * to run as root (it writes the maps while bwrap waits); `uid`/`gid` are inside ids below count.
   */
  readonly idRange?: { readonly count: number; readonly hostUid: number; readonly hostGid: number };
  /**
   * Capabilities (e.g. `CAP_CHOWN`) the process keeps, inside its own user namespace only: they
   * act on files whose owners the namespace maps. Only with `idRange`; default none.
   */
  readonly capabilities?: readonly string[];
  /** Mount the rootfs writable (a staged root filesystem being configured); default read-only. */
  readonly writableRootfs?: boolean;
  /** uid 0 is refused unless this is set (buildpacks must never run as root). */
  readonly allowRoot?: boolean;
  /** Hostname inside the sandbox's UTS namespace. */
  readonly hostname?: string;
  /**
   * The file-mode creation mask the process starts with (e.g. 0o022), whatever kiln's own is: what
   * it creates must not depend on the umask of whoever started kiln. Absent: kiln's own.
   */
  readonly umask?: number;
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
  /**
   * Set when kiln or the kernel stopped the process because a limit was hit (memory, disk budget,
   * host free-space reserve): one line naming the limit and how to raise it. The caller fails.
   */
  readonly limit?: string;
}

/** What an executor can provide. */
export interface ExecutorCapabilities {
  /** Mounts (`RunSpec.mounts`, a separate rootfs) are honoured: paths inside may differ from the host's. */
  readonly mounts: boolean;
  /** The process can get a network of its own (`none` or isolated) instead of kiln's. */
  readonly isolatesNetwork: boolean;
}

/** Runs processes in some kind of isolation. */
export interface Executor {
  readonly name: string;
  /** What this executor can do for a run; callers ask here, never by the executor's class. */
  readonly capabilities: ExecutorCapabilities;
  run(spec: RunSpec): Promise<RunResult>;
  /**
   * Optional, best effort: get ready ahead of need for a later run with `spec`'s identity, stdio,
   * network and limits (argv, env and mounts do not matter), so that run starts sooner; nothing of
   * `spec` runs. Never fails (a later run that finds nothing ready starts on its own path).
   */
  prepare?(spec: RunSpec): Promise<void>;
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
