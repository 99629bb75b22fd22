/**
 * BubblewrapExecutor runs each process with bubblewrap (the sandbox Flatpak uses) in fresh user,
 * pid, ipc, uts, cgroup, mount and (for `network: 'none'`) network namespaces, with no
 * capabilities, NoNewPrivs, a read-only root filesystem and only the mounts the spec names.
 *
 * Identity (decided; see README.md): when kiln runs as root, bwrap is started as the host ids
 * H:HG (spec.hostIds, leased from kiln's subordinate range for builds and `kiln run`; U:G when
 * absent) with no supplementary groups (node's spawn uid/gid, i.e. what `setpriv --reuid=H
 * --regid=HG --clear-groups` does), so the user namespace maps inside-U to outside-H and
 * everything the process writes is really owned by H on the host. Running bwrap as root with
 * `--uid U` instead would map inside-U to outside-0: files would be root-owned and the sandboxed
 * process would own every root-owned file it can see. Consequence: every mount source and the
 * rootfs must be reachable (searchable directories) by uid H, e.g. not under /root.
 * When kiln is not root it cannot switch users: inside-U then maps to kiln's own uid.
 */

import { execFile, spawnSync } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import path from 'node:path';
import { KilnError } from '../internal/errors.ts';
import { EXTRA_FD_BASE, type HostCommand, prlimitArgs, runChild, validateSpec } from './_child.ts';
import { type Executor, NETWORK_FILES, type RunResult, type RunSpec } from './executor.ts';
import { BUILD_LIMIT_DEFAULTS } from './limits.ts';
import { expectWorkDirs, neutralView } from './mount-view.ts';
import { enterPrefix } from './network.ts';
import { prepareRun } from './run-guard.ts';
import { DEFAULT_INIT, INIT_PATH, type InitSetting, initArgs, openInitFor, withFd } from './sandbox-init.ts';
import {
  openSeccompFilter,
  type SeccompSetting,
  seccompArgs,
  seccompFilterOf,
  withSeccompFilter,
} from './seccomp.ts';

/**
 * probeInBackground fills the cache bwrapSupportsDisableUserns reads, without blocking kiln's
 * main thread on `bwrap --version` (a spawnSync cost ~5 ms before the first sandbox).
 */
function probeInBackground(bwrap = 'bwrap'): Promise<void> {
  if (probed.has(bwrap)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    execFile(bwrap, ['--version'], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }, (err, stdout) => {
      // A failed probe is left to the synchronous one (which then reports the same as before).
      if (!err && !probed.has(bwrap)) probed.set(bwrap, supportsDisableUserns(stdout));
      resolve();
    });
  });
}

function supportsDisableUserns(version: string): boolean {
  const m = /(\d+)\.(\d+)/.exec(version);
  return m !== null && (Number(m[1]) > 0 || Number(m[2]) >= 8);
}

/** Where the helper programs are and who kiln runs as (resolved once by the CLI). */
/** bubblewrap refused to set the sandbox up (a mount, a namespace): nothing of the process ran. */
export class SandboxSetupError extends KilnError {
  /** bubblewrap's own line. */
  readonly detail: string;
  constructor(message: string, detail: string) {
    super(message);
    this.name = 'SandboxSetupError';
    this.detail = detail;
  }
}

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
   * Hide host paths from the sandbox (mount-view.ts): overlay roots instead of bind sources in
   * /proc/self/mountinfo, bwrap's options through `--args` (not in /proc/1/cmdline). Default true.
   */
  readonly neutralView?: boolean;
  /**
   * The seccomp BPF program every sandboxed process runs under (seccomp.ts). Default: the build
   * step's dist/seccomp/default.bpf, required (a missing file refuses to start the sandbox) unless
   * `KILN_SECCOMP=off`. `false` turns the filter off explicitly.
   */
  readonly seccomp?: SeccompSetting;
  /**
   * The sandbox's pid 1 (sandbox-init.ts): default the build step's dist/init/kiln-init,
   * non-dumpable so /proc/1/mem cannot be opened from inside; `false`: bwrap's own init.
   */
  readonly init?: InitSetting;
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
    ok = supportsDisableUserns(out.stdout ?? '');
    probed.set(bwrap, ok);
  }
  return ok;
}

/**
 * Default limits applied when a spec sets none: enough for npm and compilers, not for fork bombs,
 * memory hogs or disk fillers (sizes: limits.ts BUILD_LIMIT_DEFAULTS; `kiln build` flags override).
 */
export const DEFAULT_LIMITS = {
  processes: 4096,
  openFiles: 20000,
  tmpfsBytes: 1 << 30,
  fileSizeBytes: BUILD_LIMIT_DEFAULTS.fileSizeBytes,
  memoryBytes: BUILD_LIMIT_DEFAULTS.memoryBytes,
  diskBytes: BUILD_LIMIT_DEFAULTS.diskBytes,
  diskReserveBytes: BUILD_LIMIT_DEFAULTS.diskReserveBytes,
} as const;

/**
 * withIdRange makes bwrap wait in its new user namespace (`--userns-block-fd`, right after the
 * bwrap argument) until runChild has mapped inside 0..count-1 onto the leased host block.
 */
function withIdRange(
  cmd: HostCommand,
  bwrap: string,
  range: NonNullable<RunSpec['idRange']>,
  extraFds: number,
): HostCommand {
  const args = [...cmd.args];
  const at = cmd.file === bwrap ? 0 : args.indexOf(bwrap) + 1;
  // run() hands the extra fds (the seccomp filter) over first: the block fd comes after them.
  args.splice(at, 0, '--userns-block-fd', String(EXTRA_FD_BASE + extraFds));
  return {
    ...cmd,
    args,
    idMap: { uidMap: `0 ${range.hostUid} ${range.count}\n`, gidMap: `0 ${range.hostGid} ${range.count}\n` },
  };
}

/** The Executor used by default: bubblewrap from the Debian package `bubblewrap`. */
export class BubblewrapExecutor implements Executor {
  readonly name = 'bubblewrap';
  readonly capabilities = { mounts: true, isolatesNetwork: true } as const;
  readonly #opts: BubblewrapOptions;
  readonly #seccomp: SeccompSetting;
  readonly #init: InitSetting;

  /** The `bwrap --version` probe, started at construction (nothing to wait for when known). */
  readonly #probe: Promise<void>;

  constructor(opts: BubblewrapOptions) {
    this.#opts = opts;
    this.#seccomp = seccompFilterOf(opts.seccomp);
    this.#init = opts.init ?? DEFAULT_INIT;
    this.#probe = opts.disableUserns === undefined ? probeInBackground(opts.bwrap) : Promise.resolve();
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
    // The host ids are leased ones (spec.hostIds) for builds and `kiln run`: no real account's.
    const range = spec.idRange;
    let outer = this.#hostIdsOf(spec);

    const args: string[] = [
      '--unshare-user',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
      ...(spec.network === 'none' ? ['--unshare-net'] : []),
      // No user namespaces inside: closes the usual route to regaining capabilities. (bwrap
      // refuses it with --userns-block-fd, which an id range needs: seccomp denies them there.)
      ...(!range && (o.disableUserns ?? bwrapSupportsDisableUserns(o.bwrap)) ? ['--disable-userns'] : []),
      '--die-with-parent',
      '--new-session',
      '--clearenv',
      '--cap-drop',
      'ALL',
      ...(spec.capabilities ?? []).flatMap((c) => ['--cap-add', c]),
      spec.writableRootfs ? '--bind' : '--ro-bind',
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
    // kiln-init as pid 1, copied into /dev before it turns read-only; its fd follows the filter's.
    const withInitFd = this.#init === false ? undefined : EXTRA_FD_BASE + (this.#seccomp === false ? 0 : 1);
    if (withInitFd !== undefined) args.push(...initArgs(withInitFd));
    // bwrap's /dev is itself a writable tmpfs: make it read-only (device nodes still work).
    args.push('--remount-ro', '/dev');
    // With the host network, name resolution is the host's: bind its resolv.conf and hosts over
    // the empty mount points the rootfs cache creates (skipped for rootfs without them). An
    // isolated network brings its own (slirp's DNS forwarder, a localhost-only hosts file).
    const net = typeof spec.network === 'object' ? spec.network : undefined;
    if (spec.network !== 'none') {
      for (const f of NETWORK_FILES) {
        const src = net ? (f === '/etc/resolv.conf' ? net.resolvConf : net.hosts) : f;
        if (existsSync(src) && existsSync(path.join(spec.rootfs, f))) args.push('--ro-bind', src, f);
      }
    }
    for (const m of spec.mounts) args.push(m.readonly ? '--ro-bind' : '--bind', m.src, m.dst);
    if (spec.hostname !== undefined) args.push('--hostname', spec.hostname);
    args.push('--uid', String(spec.uid), '--gid', String(spec.gid), '--chdir', spec.cwd);
    for (const [k, v] of Object.entries(spec.env)) args.push('--setenv', k, v);
    args.push(...seccompArgs(this.#seccomp), '--info-fd', '3', '--');
    args.push(...(withInitFd === undefined ? [] : [INIT_PATH]), ...spec.argv);

    // An isolated network: bwrap joins the build's namespace (root enters it, then drops to the
    // sandbox uid in the same exec, see network.ts) instead of unsharing one.
    const enter = net ? enterPrefix(net, outer) : [];
    if (net) outer = undefined;
    const all = [...enter, ...prefix, o.bwrap ?? 'bwrap', ...args];
    const [file, ...rest] = all as [string, ...string[]];
    // The helpers themselves get a minimal PATH only; bwrap --clearenv empties it for the command.
    // They start in / so that no shell among them exports kiln's working directory as PWD into
    // what the sandbox can read (/proc/1/environ is bwrap's environment).
    const cmd: HostCommand = {
      file,
      args: rest,
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
      cwd: '/',
      infoFd: true,
      ...outer,
    };
    const extraFds = (this.#seccomp === false ? 0 : 1) + (withInitFd === undefined ? 0 : 1);
    return range ? withIdRange(cmd, o.bwrap ?? 'bwrap', range, extraFds) : cmd;
  }

  /** The host ids the sandbox runs as (undefined: kiln's own, when kiln is not root). */
  #hostIdsOf(spec: RunSpec): { uid: number; gid: number } | undefined {
    const o = this.#opts;
    const range = spec.idRange;
    if (range && o.hostUid !== 0) {
      throw new KilnError(
        'sandbox: an id range needs kiln to run as root (only root can map a range of host ids)',
      );
    }
    if (range) return { uid: range.hostUid, gid: range.hostGid };
    if (o.hostUid !== 0) return undefined;
    if (spec.hostIds) return { ...spec.hostIds };
    const uid = spec.uid === 0 ? (o.rootMapsTo ?? 65534) : spec.uid;
    return { uid, gid: spec.uid === 0 ? uid : spec.gid };
  }

  /**
   * prepare starts the first process of a later run like `spec` and places it in that run's own
   * fresh cgroup now (standby.ts, run-guard.ts prepareRun): moving a process into a cgroup waits
   * for the kernel (10-25 ms), and a build knows its next sandbox long before it starts it.
   */
  async prepare(spec: RunSpec): Promise<void> {
    try {
      if (typeof spec.network === 'object') await spec.network.ready;
      await this.#probe;
      const cmd = this.commandFor(spec);
      // The neutral view's work dirs for this run's writable mounts: the run before it leaves its
      // own for it instead of removing them (mount-view.ts).
      if (this.#opts.neutralView !== false && cmd.idMap === undefined) {
        const owner = this.#hostIdsOf(spec);
        expectWorkDirs(
          spec.mounts.filter((m) => !m.readonly).map((m) => m.src),
          owner,
        );
      }
      const init = openInitFor(this.#init);
      const filter = this.#seccomp === false ? undefined : openSeccompFilter(this.#seccomp);
      try {
        // The fds as run() places them: the filter's first, then the init's; the neutral view adds
        // its `--args` pipe (nothing is written to it: the run that takes the standby does that).
        const placed = withFd(withFd(cmd, init), filter);
        const viewed =
          this.#opts.neutralView === false || cmd.idMap !== undefined
            ? placed
            : { ...placed, dataFds: [...(placed.dataFds ?? []), Buffer.alloc(0)] };
        prepareRun(viewed, { ...spec, limits: { ...DEFAULT_LIMITS, ...spec.limits } });
      } finally {
        if (filter !== undefined) closeSync(filter);
        if (init !== undefined) closeSync(init);
      }
    } catch {
      // Best effort: the run itself reports whatever stops it.
    }
  }

  async run(spec: RunSpec): Promise<RunResult> {
    // A build's isolated network may still be being made (startNetwork): enter it once it is.
    if (typeof spec.network === 'object') await spec.network.ready;
    await this.#probe;
    const cmd = this.commandFor(spec);
    const owner = this.#hostIdsOf(spec);
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
    // The filter's fd first (extraFds[0] is what `--seccomp 4` names), then the neutral view,
    // whose `--args` pipe goes after every fd already placed.
    // The neutral view's own user namespace would be the parent of bwrap's, where an id range
    // (mapped by root onto host ids) cannot be written: id-range runs keep plain binds.
    // The init's fd goes right after the filter's (withSeccompFilter puts the filter first).
    const init = openInitFor(this.#init);
    const result = await withSeccompFilter(this.#seccomp, withFd(cmd, init), async (filtered) => {
      const view =
        this.#opts.neutralView === false || filtered.idMap !== undefined
          ? { cmd: filtered, cleanup: async () => {} }
          : await neutralView(filtered, {
              bwrap: this.#opts.bwrap ?? 'bwrap',
              // The overlays' work dirs belong to whoever mounts them: the sandbox's host ids (the
              // spawn uid, or nsenter's -S/-G with an isolated network).
              ...(owner !== undefined ? { owner } : {}),
            });
      try {
        return await runChild(view.cmd, { ...spec, limits: { ...DEFAULT_LIMITS, ...spec.limits }, stderr });
      } finally {
        await view.cleanup();
      }
    }).finally(() => init !== undefined && closeSync(init));
    if (result.exitCode === 1 && setupErrors.length > 0) {
      const msg = setupErrors[0] ?? '';
      const hint = /Permission denied/.test(msg)
        ? ` (every directory above a mount source and the rootfs must be searchable by host uid ${cmd.uid ?? spec.uid}; kiln drops root before starting bwrap)`
        : '';
      throw new SandboxSetupError(`sandbox could not be set up: ${msg.slice('bwrap: '.length)}${hint}`, msg);
    }
    return result;
  }
}
