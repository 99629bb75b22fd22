/**
 * The part both executors share: spawn the (wrapped) command, stream its output as lines, stop
 * it on timeout or abort, and turn how it ended into a RunResult with notes about limits hit.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import type { Limits, OutputSink, RunResult, RunSpec } from './executor.ts';

/** What to spawn on the host and how to find the process to signal. */
export interface HostCommand {
  readonly file: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly cwd?: string;
  readonly uid?: number;
  readonly gid?: number;
  /** bwrap writes `{"child-pid": N}` to fd 3 when asked with --info-fd 3. */
  readonly infoFd: boolean;
  /**
   * Open host file descriptors handed to the child as fds 4, 5, … in this order (e.g. a seccomp
   * program for `bwrap --seccomp 4`). The caller owns them and closes them after the run.
   */
  readonly extraFds?: readonly number[];
  /**
   * Bytes the child reads from pipes at the fds after `extraFds` (e.g. bwrap's `--args FD`, so its
   * options never show in /proc/PID/cmdline inside the sandbox). Written and closed at spawn.
   */
  readonly dataFds?: readonly Buffer[];
}

/** The child's fd number for `cmd.extraFds[i]`. */
export const EXTRA_FD_BASE = 4;

/**
 * prlimitArgs gives the prlimit options that lower `limits` (soft = hard) for the process it
 * starts; empty when there is nothing to lower, so the caller can skip prlimit altogether.
 */
export function prlimitArgs(limits: Limits): string[] {
  const rl: string[] = [];
  if (limits.processes !== undefined) rl.push(`--nproc=${limits.processes}:${limits.processes}`);
  if (limits.openFiles !== undefined) rl.push(`--nofile=${limits.openFiles}:${limits.openFiles}`);
  if (limits.fileSizeBytes !== undefined) rl.push(`--fsize=${limits.fileSizeBytes}:${limits.fileSizeBytes}`);
  return rl;
}

/** Rejects specs that cannot be honoured exactly, before anything starts. */
export function validateSpec(spec: RunSpec): void {
  if (spec.argv.length === 0 || spec.argv[0] === '') {
    throw new KilnError('sandbox: argv is empty: expected at least the program to run', ExitCode.Failed);
  }
  if (!Number.isInteger(spec.uid) || spec.uid < 0 || !Number.isInteger(spec.gid) || spec.gid < 0) {
    throw new KilnError(
      `sandbox: uid/gid ${spec.uid}:${spec.gid} is invalid: expected non-negative integers`,
    );
  }
  if (spec.uid === 0 && !spec.allowRoot) {
    throw new KilnError(
      `sandbox: refusing to run ${spec.argv[0]} as uid 0: buildpack code must run as the non-root build user (CNB_USER_ID)`,
      ExitCode.Failed,
    );
  }
  if (!spec.cwd.startsWith('/')) {
    throw new KilnError(`sandbox: working directory "${spec.cwd}" is not absolute`);
  }
  for (const m of spec.mounts) {
    if (!m.dst.startsWith('/') || m.dst.split('/').includes('..')) {
      throw new KilnError(`sandbox: mount destination "${m.dst}" must be an absolute path without ".."`);
    }
  }
  for (const [k, v] of Object.entries(spec.env)) {
    if (k === '' || k.includes('=') || k.includes('\0') || v.includes('\0')) {
      throw new KilnError(
        `sandbox: environment variable "${k.replaceAll('\0', '\\0')}" has an invalid name or value`,
      );
    }
  }
}

/** Byte stream → callback per line; the trailing partial line is delivered at the end. */
function lineSplitter(sink: (line: string) => void): { write(chunk: Buffer): void; end(): void } {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  return {
    write(chunk) {
      pending += decoder.write(chunk);
      let nl = pending.indexOf('\n');
      while (nl !== -1) {
        sink(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        nl = pending.indexOf('\n');
      }
    },
    end() {
      pending += decoder.end();
      if (pending !== '') sink(pending);
      pending = '';
    },
  };
}

function stdioFor(sink: OutputSink | undefined): 'pipe' | 'inherit' | 'ignore' {
  if (sink === 'inherit') return 'inherit';
  if (sink === undefined || sink === 'ignore') return 'ignore';
  return 'pipe';
}

/** Error strings the kernel turns into; a match becomes a note naming the limit in plain words. */
function notesFrom(lines: readonly string[], spec: RunSpec): string[] {
  const notes = new Set<string>();
  const tmpfs = (spec.tmpfs ?? ['/tmp']).join(', ');
  const size = spec.limits?.tmpfsBytes;
  for (const line of lines) {
    if (/No space left on device|ENOSPC/.test(line)) {
      notes.add(
        size !== undefined
          ? `a filesystem filled up (No space left on device): in-memory ${tmpfs} is limited to ${formatBytes(size)} each`
          : 'a filesystem filled up (No space left on device)',
      );
    }
    if (/Resource temporarily unavailable|EAGAIN|fork: retry|Cannot fork/i.test(line)) {
      const n = spec.limits?.processes;
      notes.add(
        n !== undefined
          ? `the process limit was reached (at most ${n} processes for uid ${spec.uid})`
          : 'process creation failed (Resource temporarily unavailable)',
      );
    }
    if (/File too large|EFBIG/.test(line) && spec.limits?.fileSizeBytes !== undefined) {
      notes.add(`a file exceeded the ${formatBytes(spec.limits.fileSizeBytes)} file size limit`);
    }
    if (/Read-only file system|EROFS/.test(line)) {
      notes.add('a write outside the writable directories was refused (read-only file system)');
    }
  }
  return [...notes];
}

function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1).replace(/\.0$/, '')} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1).replace(/\.0$/, '')} MiB`;
  return `${n} bytes`;
}

/** The host pid of the sandboxed command: the child of bwrap's pid-namespace init, if it exists yet. */
function commandPid(initPid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${initPid}/task/${initPid}/children`, 'utf8').trim();
    const first = children.split(' ')[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the last lines a process printed (notes are derived from them; bounded memory). */
const KEEP_LINES = 200;

/**
 * Spawns `cmd` for `spec` and resolves when it has ended and all output has been delivered.
 * Abort/timeout: the sandboxed command gets the polite signal first, then everything SIGKILL.
 */
export function runChild(cmd: HostCommand, spec: RunSpec): Promise<RunResult> {
  const outMode = stdioFor(spec.stdout);
  const errMode = stdioFor(spec.stderr);
  const stdio: StdioOptions = [spec.stdin === 'inherit' ? 'inherit' : 'ignore', outMode, errMode];
  stdio.push(cmd.infoFd ? 'pipe' : 'ignore');
  for (const fd of cmd.extraFds ?? []) stdio.push(fd);
  for (const _ of cmd.dataFds ?? []) stdio.push('pipe');
  const recent: string[] = [];
  const remember = (line: string): void => {
    recent.push(line);
    if (recent.length > KEEP_LINES) recent.shift();
  };

  return new Promise<RunResult>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd.file, cmd.args as string[], {
        env: cmd.env,
        cwd: cmd.cwd,
        stdio,
        // Its own process group: a terminal's Ctrl-C reaches kiln only, which then decides what to forward.
        detached: true,
        ...(cmd.uid !== undefined ? { uid: cmd.uid } : {}),
        ...(cmd.gid !== undefined ? { gid: cmd.gid } : {}),
      });
    } catch (err) {
      reject(new KilnError(`sandbox: cannot start ${cmd.file}: ${(err as Error).message}`, ExitCode.Failed));
      return;
    }

    (cmd.dataFds ?? []).forEach((data, i) => {
      const pipe = child.stdio[
        EXTRA_FD_BASE + (cmd.extraFds?.length ?? 0) + i
      ] as NodeJS.WritableStream | null;
      // A child that exits before reading is reported by its exit status, not as EPIPE here.
      (pipe as unknown as { on(e: 'error', f: () => void): void } | null)?.on('error', () => {});
      pipe?.end(data);
    });

    let initPid: number | undefined;
    if (cmd.infoFd) {
      const info = child.stdio[3];
      let text = '';
      info?.on('data', (b: Buffer) => {
        text += b.toString('utf8');
        const m = /"child-pid":\s*(\d+)/.exec(text);
        if (m?.[1]) initPid = Number(m[1]);
      });
      info?.on('error', () => {});
    }

    const pipeOut = (stream: NodeJS.ReadableStream | null, sink: OutputSink | undefined): Promise<void> => {
      if (!stream || typeof sink !== 'function') return Promise.resolve();
      const split = lineSplitter((line) => {
        remember(line);
        sink(line);
      });
      return new Promise((done) => {
        stream.on('data', (b: Buffer) => split.write(b));
        stream.on('end', () => {
          split.end();
          done();
        });
        stream.on('error', () => done());
      });
    };
    const outputsDone = Promise.all([pipeOut(child.stdout, spec.stdout), pipeOut(child.stderr, spec.stderr)]);

    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    let exited = false;
    const stop = (politeSignal: NodeJS.Signals): void => {
      if (exited) return;
      const target = initPid !== undefined ? commandPid(initPid) : undefined;
      try {
        if (target !== undefined) process.kill(target, politeSignal);
        else if (child.pid !== undefined) process.kill(-child.pid, politeSignal);
      } catch {
        // Already gone.
      }
      killTimer ??= setTimeout(() => {
        // SIGKILL to the namespace's init takes every process in the sandbox with it.
        for (const pid of [initPid, child.pid !== undefined ? -child.pid : undefined]) {
          if (pid === undefined) continue;
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      }, spec.graceMs ?? 5000);
      killTimer.unref();
    };

    const timeout =
      spec.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            stop('SIGTERM');
          }, spec.timeoutMs)
        : undefined;
    const onAbort = (): void => {
      const reason: unknown = spec.signal?.reason;
      const sig =
        typeof reason === 'string' && reason in constants.signals ? (reason as NodeJS.Signals) : 'SIGTERM';
      stop(sig);
    };
    if (spec.signal?.aborted) onAbort();
    spec.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (err) => {
      exited = true;
      if (timeout) clearTimeout(timeout);
      spec.signal?.removeEventListener('abort', onAbort);
      reject(new KilnError(`sandbox: cannot start ${cmd.file}: ${err.message}`, ExitCode.Failed));
    });
    child.on('exit', (code, signal) => {
      exited = true;
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
      spec.signal?.removeEventListener('abort', onAbort);
      void outputsDone.then(() => {
        // bwrap reports a command killed by signal N as exit status 128+N, as shells do.
        let sig: NodeJS.Signals | null = signal;
        let exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
        if (sig === null && exitCode > 128 && exitCode < 128 + 65) {
          const name = Object.entries(constants.signals).find(([, n]) => n === exitCode - 128)?.[0];
          if (name) sig = name as NodeJS.Signals;
        }
        if (signal) exitCode = 128 + (constants.signals[signal] ?? 0);
        const notes = notesFrom(recent, spec);
        if (timedOut) notes.unshift(`stopped after the ${spec.timeoutMs} ms time limit`);
        resolve({ exitCode, signal: sig, timedOut, notes });
      });
    });
  });
}
