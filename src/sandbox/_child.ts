/**
 * The part both executors share: spawn the (wrapped) command, stream its output as lines, stop
 * it on timeout or abort, and turn how it ended into a RunResult with notes about limits hit.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { KilnError } from '../internal/errors.ts';
import type { Limits, OutputSink, RunResult, RunSpec } from './executor.ts';
import { formatBytes, limitMessages, RAISE } from './limits.ts';
import { RunGuard } from './run-guard.ts';

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
   * uid_map/gid_map lines kiln (root) writes for bwrap's user namespace while bwrap waits on its
   * `--userns-block-fd` (fd usernsBlockFd(cmd), a pipe runChild adds after the extra fds).
   */
  readonly idMap?: { readonly uidMap: string; readonly gidMap: string };
  /**
   * Bytes the child reads from pipes at the fds after the block fd (e.g. bwrap's `--args FD`, so
   * its options never show in /proc/PID/cmdline inside the sandbox). Written and closed at spawn.
   */
  readonly dataFds?: readonly Buffer[];
}

/*
 * The child's fds: 0-2 stdio, 3 bwrap's info fd, then `extraFds`, then the user-namespace block
 * fd (with `idMap`), then `dataFds`, then the limits' gate (run-guard.ts).
 */

/** The child's fd that bwrap's `--userns-block-fd` reads (after infoFd and the extra fds). */
export function usernsBlockFd(cmd: Pick<HostCommand, 'extraFds'>): number {
  return EXTRA_FD_BASE + (cmd.extraFds?.length ?? 0);
}

/** The first child fd after everything `cmd` already places (where the next pipe goes). */
export function nextFd(cmd: Pick<HostCommand, 'extraFds' | 'idMap' | 'dataFds'>): number {
  return usernsBlockFd(cmd) + (cmd.idMap ? 1 : 0) + (cmd.dataFds?.length ?? 0);
}

/**
 * ownUmask is kiln's umask, read from /proc (process.umask() without an argument is deprecated,
 * and setting it to read it would change it for every thread of kiln meanwhile).
 */
function ownUmask(): number | undefined {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number.parseInt(m[1]!, 8) : undefined;
  } catch {
    // A probe: without /proc the umask is simply not reported.
    return undefined;
  }
}

/**
 * withUmask starts `cmd` under `umask` (through the host's /bin/sh, which the run gate uses too)
 * when it differs from kiln's own; the mask is inherited through bwrap and exec.
 */
export function withUmask(cmd: HostCommand, umask: number | undefined): HostCommand {
  if (umask === undefined || ownUmask() === umask) return cmd;
  const mask = (umask & 0o777).toString(8).padStart(3, '0');
  return {
    ...cmd,
    file: '/bin/sh',
    args: ['-c', `umask ${mask}; exec "$@"`, 'kiln-umask', cmd.file, ...cmd.args],
  };
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
    throw new KilnError('sandbox: argv is empty: expected at least the program to run');
  }
  if (!Number.isInteger(spec.uid) || spec.uid < 0 || !Number.isInteger(spec.gid) || spec.gid < 0) {
    throw new KilnError(
      `sandbox: uid/gid ${spec.uid}:${spec.gid} is invalid: expected non-negative integers`,
    );
  }
  const h = spec.hostIds;
  if (h && (!Number.isInteger(h.uid) || h.uid < 1 || !Number.isInteger(h.gid) || h.gid < 1)) {
    throw new KilnError(
      `sandbox: host ids ${h.uid}:${h.gid} are invalid: expected positive integers (never host root)`,
    );
  }
  const r = spec.idRange;
  if (r) {
    const ok = (n: number, min: number) => Number.isInteger(n) && n >= min;
    if (!ok(r.count, 1) || r.count > 65536 || !ok(r.hostUid, 1) || !ok(r.hostGid, 1)) {
      throw new KilnError(
        `sandbox: id range ${r.count}@${r.hostUid}:${r.hostGid} is invalid: expected 1-65536 ids at positive host ids`,
      );
    }
    if (spec.uid >= r.count || spec.gid >= r.count) {
      throw new KilnError(`sandbox: ${spec.uid}:${spec.gid} is outside the id range 0-${r.count - 1}`);
    }
  }
  for (const c of spec.capabilities ?? []) {
    if (!r || !/^CAP_[A-Z_]+$/.test(c)) {
      throw new KilnError(
        `sandbox: capability "${c}" refused: expected CAP_NAME values, and only with an id range (capabilities of the sandbox's own user namespace)`,
      );
    }
  }
  if (spec.uid === 0 && !spec.allowRoot) {
    throw new KilnError(
      `sandbox: refusing to run ${spec.argv[0]} as uid 0: buildpack code must run as the non-root build user (CNB_USER_ID)`,
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

export function stdioFor(sink: OutputSink | undefined): 'pipe' | 'inherit' | 'ignore' {
  if (sink === 'inherit') return 'inherit';
  if (sink === undefined || sink === 'ignore') return 'ignore';
  return 'pipe';
}

/** Error strings the kernel turns into; a match becomes a note naming the limit in plain words. */
function notesFrom(lines: readonly string[], spec: RunSpec, signal: NodeJS.Signals | null): string[] {
  const notes = new Set<string>();
  const tmpfs = (spec.tmpfs ?? ['/tmp']).join(', ');
  const l = spec.limits ?? {};
  const size = l.tmpfsBytes;
  for (const line of lines) {
    if (/No space left on device|ENOSPC/.test(line)) {
      notes.add(
        size !== undefined
          ? `a filesystem filled up (No space left on device): in-memory ${tmpfs} is limited to ${formatBytes(size)} each`
          : 'a filesystem filled up (No space left on device)',
      );
    }
    if (/Resource temporarily unavailable|EAGAIN|fork: retry|Cannot fork/i.test(line)) {
      notes.add(
        l.processes !== undefined
          ? limitMessages.processes(l.processes)
          : 'process creation failed (Resource temporarily unavailable)',
      );
    }
    if (/File too large|EFBIG|File size limit exceeded/.test(line) && l.fileSizeBytes !== undefined) {
      notes.add(limitMessages.fileSize(l.fileSizeBytes));
    }
    // Only meaningful where memory is an rlimit (no cgroup): allocations fail instead of an OOM kill.
    if (
      /Cannot allocate memory|ENOMEM|MemoryError|heap out of memory|std::bad_alloc|out of memory/i.test(
        line,
      ) &&
      l.memoryBytes !== undefined
    ) {
      notes.add(`memory ran out (the limit is ${formatBytes(l.memoryBytes)}); raise it with ${RAISE.memory}`);
    }
    if (/Read-only file system|EROFS/.test(line)) {
      notes.add('a write outside the writable directories was refused (read-only file system)');
    }
  }
  if (signal === 'SIGXFSZ' && l.fileSizeBytes !== undefined)
    notes.add(limitMessages.fileSize(l.fileSizeBytes));
  return [...notes];
}

/** The host pid of the sandboxed command: the child of bwrap's pid-namespace init, if it exists yet. */
function commandPid(initPid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${initPid}/task/${initPid}/children`, 'utf8').trim();
    const first = children.split(' ')[0];
    return first ? Number(first) : undefined;
  } catch {
    // A probe: the init may have no child yet or be gone already.
    return undefined;
  }
}

/** Keeps the last lines a process printed (notes are derived from them; bounded memory). */
const KEEP_LINES = 200;

/**
 * Spawns `cmd` for `spec` and resolves when it has ended and all output has been delivered.
 * Abort/timeout: the sandboxed command gets the polite signal first, then everything SIGKILL.
 */
export function runChild(unguarded: HostCommand, spec: RunSpec): Promise<RunResult> {
  // Memory/process cgroup, disk budget and free-space reserve (run-guard.ts).
  const guard = new RunGuard(withUmask(unguarded, spec.umask), spec);
  if (guard.refused !== undefined)
    return Promise.resolve({ exitCode: 125, signal: null, timedOut: false, notes: [], limit: guard.refused });
  const cmd = guard.cmd;
  const outMode = stdioFor(spec.stdout);
  const errMode = stdioFor(spec.stderr);
  const stdio: StdioOptions = [spec.stdin === 'inherit' ? 'inherit' : 'ignore', outMode, errMode];
  stdio.push(cmd.infoFd ? 'pipe' : 'ignore');
  for (const fd of cmd.extraFds ?? []) stdio.push(fd);
  const blockFd = cmd.idMap ? stdio.push('pipe') - 1 : undefined;
  for (const _ of cmd.dataFds ?? []) stdio.push('pipe');
  if (guard.gateFd !== undefined) stdio[guard.gateFd] = 'pipe';
  const recent: string[] = [];
  const remember = (line: string): void => {
    recent.push(line);
    if (recent.length > KEEP_LINES) recent.shift();
  };

  return new Promise<RunResult>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child =
        guard.standby?.child ??
        spawn(cmd.file, cmd.args as string[], {
          env: cmd.env,
          cwd: cmd.cwd,
          stdio,
          // Its own process group: a terminal's Ctrl-C reaches kiln only, which then decides what to forward.
          detached: true,
          ...(cmd.uid !== undefined ? { uid: cmd.uid } : {}),
          ...(cmd.gid !== undefined ? { gid: cmd.gid } : {}),
        });
    } catch (err) {
      reject(new KilnError(`sandbox: cannot start ${cmd.file}: ${(err as Error).message}`));
      return;
    }

    const dataBase = usernsBlockFd(cmd) + (cmd.idMap ? 1 : 0);
    (cmd.dataFds ?? []).forEach((data, i) => {
      const pipe = child.stdio[dataBase + i] as NodeJS.WritableStream | null;
      // A child that exits before reading is reported by its exit status, not as EPIPE here.
      (pipe as unknown as { on(e: 'error', f: () => void): void } | null)?.on('error', () => {});
      pipe?.end(data);
    });

    let initPid: number | undefined;
    // A signal asked for before bwrap reported its child pid (the info fd and stdout are separate
    // pipes: a line the command printed can arrive first) waits for it instead of hitting bwrap.
    let pendingSignal: NodeJS.Signals | undefined;
    if (cmd.infoFd) {
      const info = child.stdio[3];
      let text = '';
      info?.on('data', (b: Buffer) => {
        text += b.toString('utf8');
        const m = /"child-pid":\s*(\d+)/.exec(text);
        if (m?.[1] && initPid === undefined) {
          initPid = Number(m[1]);
          if (cmd.idMap && blockFd !== undefined) void mapIds(initPid, cmd.idMap, blockFd);
          if (pendingSignal !== undefined) signalCommand(pendingSignal);
        }
      });
      info?.on('error', () => {});
    }

    // bwrap's sandbox waits in its new user namespace until kiln, root outside, has written the
    // range's maps (a range needs CAP_SETUID in the parent namespace: bwrap cannot write it).
    let mapError: Error | undefined;
    const mapIds = async (pid: number, map: NonNullable<HostCommand['idMap']>, fd: number) => {
      try {
        await writeFile(`/proc/${pid}/uid_map`, map.uidMap);
        await writeFile(`/proc/${pid}/gid_map`, map.gidMap);
        (child.stdio[fd] as NodeJS.WritableStream | null)?.end('1');
      } catch (e) {
        mapError = e as Error;
        // A sandbox blocked before its maps ignores SIGTERM.
        for (const p of [pid, child.pid !== undefined ? -child.pid : undefined]) {
          try {
            if (p !== undefined) process.kill(p, 'SIGKILL');
          } catch {
            // The process may already be gone (ESRCH): nothing left to kill.
          }
        }
      }
    };

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
    const killAll = (): void => {
      guard.kill();
      // SIGKILL to the namespace's init takes every process in the sandbox with it.
      for (const pid of [initPid, child.pid !== undefined ? -child.pid : undefined]) {
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    };
    guard.started(child, killAll);
    const signalCommand = (sig: NodeJS.Signals, tries = 0): void => {
      if (exited) return;
      if (cmd.infoFd && initPid === undefined) {
        pendingSignal = sig;
        return;
      }
      const target = initPid !== undefined ? commandPid(initPid) : undefined;
      // bwrap's init may not have forked the command yet: look again shortly before hitting bwrap.
      if (initPid !== undefined && target === undefined && tries < 20) {
        setTimeout(() => signalCommand(sig, tries + 1), 10).unref();
        return;
      }
      try {
        if (target !== undefined) process.kill(target, sig);
        else if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // Already gone.
      }
    };
    const stop = (politeSignal: NodeJS.Signals): void => {
      if (exited) return;
      signalCommand(politeSignal);
      killTimer ??= setTimeout(killAll, spec.graceMs ?? 5000);
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
      void guard.finished({ signal: null });
      reject(new KilnError(`sandbox: cannot start ${cmd.file}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      exited = true;
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
      spec.signal?.removeEventListener('abort', onAbort);
      // bwrap reports a command killed by signal N as exit status 128+N, as shells do.
      let sig: NodeJS.Signals | null = signal;
      let exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
      if (sig === null && exitCode > 128 && exitCode < 128 + 65) {
        const name = Object.entries(constants.signals).find(([, n]) => n === exitCode - 128)?.[0];
        if (name) sig = name as NodeJS.Signals;
      }
      if (signal) exitCode = 128 + (constants.signals[signal] ?? 0);
      void Promise.all([outputsDone, guard.finished({ signal: sig })]).then(([, guarded]) => {
        if (mapError) {
          reject(new KilnError(`sandbox: cannot map the id range: ${mapError.message}`));
          return;
        }
        const notes = [...new Set([...guarded.notes, ...notesFrom(recent, spec, sig)])];
        if (timedOut) notes.unshift(`stopped after the ${spec.timeoutMs} ms time limit`);
        resolve({
          exitCode,
          signal: sig,
          timedOut,
          notes,
          ...(guarded.limit ? { limit: guarded.limit } : {}),
        });
      });
    });
  });
}
