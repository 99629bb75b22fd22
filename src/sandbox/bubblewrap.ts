/**
 * BubblewrapExecutor runs each process with bubblewrap (the sandbox Flatpak uses) in fresh user,
 * pid, ipc, uts, cgroup, mount and (for `network: 'none'`) network namespaces, with no
 * capabilities, NoNewPrivs, a read-only root filesystem and only the mounts the spec names.
 *
 * Identity (decided; see README.md): when kiln runs as root, bwrap is started as U:G with no
 * supplementary groups (node's spawn uid/gid, i.e. what `setpriv --reuid=U --regid=G
 * --clear-groups` does), so the user namespace maps inside-U to outside-U
 * and everything the process writes is really owned by U on the host. Running bwrap as root with
 * `--uid U` instead would map inside-U to outside-0: files would be root-owned and the sandboxed
 * process would own every root-owned file it can see. Consequence: every mount source and the
 * rootfs must be reachable (searchable directories) by uid U, e.g. not under /root.
 * When kiln is not root it cannot switch users: inside-U then maps to kiln's own uid.
 */

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ExitCode, KilnError } from '../cnb/exit-codes.ts';
import { type HostCommand, prlimitArgs, runChild, validateSpec } from './_child.ts';
import { type Executor, NETWORK_FILES, type RunResult, type RunSpec } from './executor.ts';
import { type SeccompSetting, seccompArgs, seccompFilterOf, withSeccompFilter } from './seccomp.ts';

/** Where the helper programs are and who kiln runs as (resolved once by the CLI). */
export interface BubblewrapOptions {
  readonly bwrap?: string;
  readonly prlimit?: string;
  /** kiln's own uid (process.getuid()); as root, kiln switches to the sandbox uid before bwrap. */
  readonly hostUid: number;
  /** Host uid that sandbox uid 0 maps to when kiln is root and `allowRoot` is set (default 65534, nobody). */
  readonly rootMapsTo?: number;
  /**
   * Whether bwrap knows `--disable-userns` (bubblewrap >= 0.8; Ubuntu 22.04 ships 0.6). Default:
   * probed once with `bwrap --version`.
   */
  readonly disableUserns?: boolean;
  /**
   * The seccomp BPF program every sandboxed process runs under (seccomp.ts). Default: the build
   * step's dist/seccomp/default.bpf, required (a missing file refuses to start the sandbox) unless
   * `KILN_SECCOMP=off`. `false` turns the filter off explicitly.
   */
  readonly seccomp?: SeccompSetting;
}

const probed = new Map<string, boolean>();

/** True when `bwrap --version` reports 0.8 or newer (cached per binary). */
export function bwrapSupportsDisableUserns(bwrap = 'bwrap'): boolean {
  let ok = probed.get(bwrap);
  if (ok === undefined) {
    const out = spawnSync(bwrap, ['--version'], {
      encoding: 'utf8',
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    const m = /(\d+)\.(\d+)/.exec(out.stdout ?? '');
    ok = m !== null && (Number(m[1]) > 0 || Number(m[2]) >= 8);
    probed.set(bwrap, ok);
  }
  return ok;
}

/** Default limits applied when a spec sets none: enough for npm and compilers, not for fork bombs. */
export const DEFAULT_LIMITS = { processes: 4096, openFiles: 20000, tmpfsBytes: 1 << 30 } as const;

/** The Executor used by default: bubblewrap from the Debian package `bubblewrap`. */
export class BubblewrapExecutor implements Executor {
  readonly name = 'bubblewrap';
  readonly #opts: BubblewrapOptions;
  readonly #seccomp: SeccompSetting;

  constructor(opts: BubblewrapOptions) {
    this.#opts = opts;
    this.#seccomp = seccompFilterOf(opts.seccomp);
  }

  /** The host command line for `spec` (exposed for tests and `--dry-run` style diagnostics). */
  commandFor(spec: RunSpec): HostCommand {
    validateSpec(spec);
    const o = this.#opts;
    const limits = { ...DEFAULT_LIMITS, ...spec.limits };
    const prefix: string[] = [];

    // Limits first (lowering needs no capability), then identity, then the namespaces.
    const rl = prlimitArgs(limits);
    if (rl.length > 0) prefix.push(o.prlimit ?? 'prlimit', ...rl, '--');

    // As root, drop to the sandbox uid before bwrap starts: node's spawn does setgid, setgroups([])
    // and setuid (what `setpriv --reuid --regid --clear-groups` does, without an extra exec).
    let outer: { uid: number; gid: number } | undefined;
    if (o.hostUid === 0) {
      const uid = spec.uid === 0 ? (o.rootMapsTo ?? 65534) : spec.uid;
      outer = { uid, gid: spec.uid === 0 ? uid : spec.gid };
    }

    const args: string[] = [
      '--unshare-user',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
      ...(spec.network === 'none' ? ['--unshare-net'] : []),
      // No user namespaces inside: closes the usual route to regaining capabilities.
      ...((o.disableUserns ?? bwrapSupportsDisableUserns(o.bwrap)) ? ['--disable-userns'] : []),
      '--die-with-parent',
      '--new-session',
      '--clearenv',
      '--cap-drop',
      'ALL',
      '--ro-bind',
      spec.rootfs,
      '/',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
    ];
    // /dev/shm is a fresh, private tmpfs of bwrap's --dev; bound it like the other in-memory dirs.
    for (const dir of [...(spec.tmpfs ?? ['/tmp']), '/dev/shm']) {
      args.push('--perms', '1777');
      if (limits.tmpfsBytes !== undefined) args.push('--size', String(limits.tmpfsBytes));
      args.push('--tmpfs', dir);
    }
    // bwrap's /dev is itself a writable tmpfs: make it read-only (device nodes still work).
    args.push('--remount-ro', '/dev');
    // With the host network, name resolution is the host's: bind its resolv.conf and hosts over
    // the empty mount points the rootfs cache creates (skipped for rootfs without them).
    if (spec.network !== 'none') {
      for (const f of NETWORK_FILES) {
        if (existsSync(f) && existsSync(path.join(spec.rootfs, f))) args.push('--ro-bind', f, f);
      }
    }
    for (const m of spec.mounts) args.push(m.readonly ? '--ro-bind' : '--bind', m.src, m.dst);
    if (spec.hostname !== undefined) args.push('--hostname', spec.hostname);
    args.push('--uid', String(spec.uid), '--gid', String(spec.gid), '--chdir', spec.cwd);
    for (const [k, v] of Object.entries(spec.env)) args.push('--setenv', k, v);
    args.push(...seccompArgs(this.#seccomp), '--info-fd', '3', '--', ...spec.argv);

    const all = [...prefix, o.bwrap ?? 'bwrap', ...args];
    const [file, ...rest] = all as [string, ...string[]];
    // The helpers themselves get a minimal PATH only; bwrap --clearenv empties it for the command.
    return { file, args: rest, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, infoFd: true, ...outer };
  }

  async run(spec: RunSpec): Promise<RunResult> {
    const cmd = this.commandFor(spec);
    // bwrap's own setup errors ("bwrap: Can't ...") come before the command runs; catch them to explain.
    const setupErrors: string[] = [];
    const collect = (line: string) => {
      if (line.startsWith('bwrap: ')) setupErrors.push(line);
    };
    const userErr = spec.stderr;
    const stderr =
      typeof userErr === 'function'
        ? (line: string) => {
            collect(line);
            userErr(line);
          }
        : userErr === 'inherit'
          ? 'inherit'
          : collect;
    const result = await withSeccompFilter(this.#seccomp, cmd, (c) => runChild(c, { ...spec, stderr }));
    if (result.exitCode === 1 && setupErrors.length > 0) {
      const msg = setupErrors[0] ?? '';
      const hint = /Permission denied/.test(msg)
        ? ` (every directory above a mount source and the rootfs must be searchable by uid ${spec.uid}; kiln drops root before starting bwrap)`
        : '';
      throw new KilnError(
        `sandbox could not be set up: ${msg.slice('bwrap: '.length)}${hint}`,
        ExitCode.Failed,
      );
    }
    return result;
  }
}
