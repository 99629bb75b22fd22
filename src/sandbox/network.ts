/**
 * SandboxNetwork: the network a build's (or a `kiln run`'s) sandboxed processes share when the
 * network mode is `isolated` (the default): a network namespace of its own with outbound access
 * through slirp4netns (a user-mode TCP/IP stack on the host side), and nothing of the host.
 *
 * Shape (decided; see README.md and SECURITY.md):
 * - One namespace per build, created by root and owned by the initial user namespace, so a
 *   sandboxed process (in a user namespace of its own, no capabilities) cannot change its
 *   addresses, routes or firewall rules. kiln holds it through an open fd (`/proc/<kiln>/fd/<n>`):
 *   no bind mount or holder process to leak when kiln is killed.
 * - Every sandboxed process enters it with `nsenter --net=… -S U -G G -- bwrap --share-net …` (or
 *   kiln-gate's `+netns`/`+ids`, which do the same, for a run from a standby), instead of
 *   attaching a helper per process (+30 ms and a race with bwrap's loopback setup, see machine
 *   notes).
 * - Firewall rules are applied by root inside the namespace (one `iptables-restore`, run by the
 *   `unshare` child that creates the namespace, before it reports it ready) before kiln even
 *   opens the namespace, so before slirp4netns and any sandboxed process start. slirp forwards guest connections to any address
 *   as host sockets, so it would otherwise reach host services bound to 0.0.0.0 through the host's
 *   own addresses; the rules reject the host's addresses, slirp's host-loopback gateway 10.0.2.2
 *   (except the allowed ports), the rest of slirp's subnet except DNS, and link-local
 *   169.254.0.0/16 (cloud metadata endpoints).
 * - slirp4netns runs with `--exit-fd` (the read end of a pipe only kiln holds) so it exits with
 *   kiln even on SIGKILL, `--enable-sandbox` (root: all capabilities but NET_BIND_SERVICE
 *   dropped, its own mount namespace) and `--enable-seccomp`.
 * - Name resolution: a generated resolv.conf (`nameserver 10.0.2.3`, slirp's DNS forwarder) and
 *   hosts file are bound over the image's mount points; the host's are not shown.
 * - Host abstract UNIX sockets are scoped to the network namespace, so they are out of reach.
 * - Nothing the sandbox listens on is published unless asked (`publish`, `kiln run -p`).
 *
 * Not root: best effort. The namespace is then owned by a user namespace kiln creates
 * (`unshare --user --map-root-user --net`); slirp4netns joins it with `--userns-path`, the rules
 * are applied as that namespace's root, and sandboxed processes enter both namespaces. The
 * sandboxed process is still in a user namespace of its own (bwrap's) without capabilities over
 * the network namespace, so it cannot change the rules.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { access, chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { KilnError, UsageError } from '../internal/errors.ts';

/** How buildpacks and `kiln run` reach the network. */
export type NetworkMode = 'isolated' | 'none' | 'host';
export const NETWORK_MODES: readonly NetworkMode[] = ['isolated', 'none', 'host'];

/** The one-line warning `--network host` prints. */
export const HOST_NETWORK_WARNING =
  "--network host: the sandbox shares this machine's network (its loopback services, abstract sockets, metadata endpoint and ports); use the default isolated network unless that is needed";

/** What a RunSpec names to run a process in a SandboxNetwork (see executor.ts RunSpec.network). */
export interface IsolatedNetwork {
  readonly mode: 'isolated';
  /** The network namespace (a path root can open: `/proc/<kiln pid>/fd/<n>`). */
  readonly netns: string;
  /** The user namespace owning it when kiln is not root (entered too); undefined as root. */
  readonly userns?: string;
  /** Generated files bound over /etc/resolv.conf and /etc/hosts. */
  readonly resolvConf: string;
  readonly hosts: string;
  /** The host ports it may reach, as `HOST:PORT` (what decides a build besides the mode). */
  readonly allowed: readonly string[];
  /**
   * Set while the namespace is still being made (startNetwork): the executor waits for it before
   * it reads the paths above, so the set-up overlaps kiln's own work of the build.
   */
  readonly ready?: Promise<void>;
}

/** A host port the sandbox may reach (`--allow-host HOST:PORT`), TCP. */
export interface AllowedHostPort {
  /** As given (for messages). */
  readonly host: string;
  readonly port: number;
  /** True for the host's loopback (reached through slirp's gateway 10.0.2.2). */
  readonly loopback: boolean;
  /** The IPv4 address the sandbox connects to on the host side (127.0.0.1 for loopback). */
  readonly address: string;
}

/** slirp4netns's fixed layout (its default 10.0.2.0/24). */
export const SLIRP = {
  cidr: '10.0.2.0/24',
  gateway: '10.0.2.2',
  dns: '10.0.2.3',
  guest: '10.0.2.100',
  tap: 'tap0',
} as const;

const HELPER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

/** The host's own IPv4 addresses other than loopback (the ones slirp would otherwise reach). */
export function hostAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.add(a.address);
  }
  return [...out].sort();
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/**
 * parseAllowHost reads one `--allow-host HOST:PORT`. Only the host itself makes sense there (its
 * loopback, `localhost`, or one of its own addresses): other machines are reachable anyway.
 */
export function parseAllowHost(
  value: string,
  ownAddresses: readonly string[] = hostAddresses(),
): AllowedHostPort {
  const m = /^(.+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(
      `--allow-host "${value}": expected HOST:PORT with a port 1-65535 (e.g. 127.0.0.1:4873)`,
    );
  }
  const host = m[1]!;
  if (host === 'localhost' || (IPV4.test(host) && host.startsWith('127.'))) {
    if (host !== 'localhost' && host !== '127.0.0.1') {
      throw new UsageError(
        `--allow-host "${value}": only 127.0.0.1 of the loopback network can be reached from the sandbox`,
      );
    }
    return { host, port, loopback: true, address: '127.0.0.1' };
  }
  if (IPV4.test(host) && ownAddresses.includes(host)) return { host, port, loopback: false, address: host };
  throw new UsageError(
    `--allow-host "${value}": expected 127.0.0.1, localhost or one of this host's addresses (${ownAddresses.join(', ') || 'none'}); other hosts are reachable without it`,
  );
}

/** Proxy variables whose URL may name a host (NO_PROXY lists hosts, it is not rewritten). */
const PROXY_URL_VARS = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy'];

/**
 * loopbackProxies finds proxy variables that point at the host's loopback (a local proxy such
 * as cntlm or a corporate agent). With the isolated network their port is allowed (only that port)
 * and the variable is rewritten to slirp's gateway, which slirp maps to the host's 127.0.0.1.
 */
export function loopbackProxies(env: Readonly<Record<string, string | undefined>>): {
  readonly allow: AllowedHostPort[];
  readonly env: Record<string, string>;
} {
  const allow = new Map<number, AllowedHostPort>();
  const rewritten: Record<string, string> = {};
  for (const k of PROXY_URL_VARS) {
    const v = env[k];
    if (v === undefined || v === '') continue;
    let url: URL;
    try {
      url = new URL(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(v) ? v : `http://${v}`);
    } catch {
      continue;
    }
    const h = url.hostname;
    if (h !== 'localhost' && h !== '127.0.0.1' && h !== '[::1]') continue;
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    allow.set(port, { host: h, port, loopback: true, address: '127.0.0.1' });
    // Replace only the host part so credentials, path and the original spelling stay as given.
    rewritten[k] = v.replace(
      /^((?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?(?:[^@/]*@)?)(localhost|127\.0\.0\.1|\[::1\])/i,
      `$1${SLIRP.gateway}`,
    );
  }
  return { allow: [...allow.values()], env: rewritten };
}

/**
 * firewallRules is the iptables-restore input applied in the namespace before anything runs in
 * it. Order matters: loopback, DNS and the allowed ports are accepted, then slirp's subnet, the
 * link-local range and every host address are rejected; the rest (the internet, the LAN) goes out.
 * Allowed loopback ports are also reachable as 127.0.0.1:PORT inside (DNAT to the gateway), so a
 * configuration naming the host's 127.0.0.1 works unchanged.
 */
export function firewallRules(allow: readonly AllowedHostPort[], ownAddresses: readonly string[]): string {
  const filter = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A OUTPUT -o lo -j ACCEPT',
    // Replies of connections that came in (published ports: slirp connects from the gateway).
    '-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    `-A OUTPUT -d ${SLIRP.dns}/32 -p udp -m udp --dport 53 -j ACCEPT`,
    `-A OUTPUT -d ${SLIRP.dns}/32 -p tcp -m tcp --dport 53 -j ACCEPT`,
  ];
  const nat = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
  ];
  for (const a of allow) {
    const dst = a.loopback ? SLIRP.gateway : a.address;
    filter.push(`-A OUTPUT -d ${dst}/32 -p tcp -m tcp --dport ${a.port} -j ACCEPT`);
    if (a.loopback) {
      nat.push(
        `-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport ${a.port} -j DNAT --to-destination ${SLIRP.gateway}:${a.port}`,
      );
    }
  }
  if (allow.some((a) => a.loopback)) nat.push(`-A POSTROUTING -s 127.0.0.0/8 -o ${SLIRP.tap} -j MASQUERADE`);
  // TCP gets a reset (immediate ECONNREFUSED; ICMP errors are rate-limited by the kernel, which
  // would slow down a build probing several blocked addresses), everything else an ICMP error.
  for (const dst of [SLIRP.cidr, '169.254.0.0/16', ...ownAddresses.map((a) => `${a}/32`)]) {
    filter.push(
      `-A OUTPUT -d ${dst} -p tcp -j REJECT --reject-with tcp-reset`,
      `-A OUTPUT -d ${dst} -j REJECT`,
    );
  }
  filter.push('COMMIT');
  nat.push('COMMIT');
  return `${filter.join('\n')}\n${nat.join('\n')}\n`;
}

/** Options of SandboxNetwork.create. */
export interface SandboxNetworkOptions {
  /** Host ports the sandbox may reach (from --allow-host and loopback proxies). */
  readonly allow?: readonly AllowedHostPort[];
  /** Parent of the network's private files (resolv.conf, hosts, api socket); default the OS temp dir. */
  readonly tmpDir?: string;
  /** kiln's uid (process.getuid()); 0 creates a root-owned namespace. */
  readonly hostUid: number;
  readonly slirp4netns?: string;
}

/**
 * SandboxNetwork is one isolated network: create it before the first sandboxed process, pass
 * `attachment` as RunSpec.network, `close()` it afterwards (slirp4netns also exits on its own
 * when kiln dies).
 */
export class SandboxNetwork {
  readonly attachment: IsolatedNetwork;
  readonly allow: readonly AllowedHostPort[];
  readonly #dir: string;
  readonly #fds: number[];
  readonly #slirp: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #apiSocket: string;
  #closed = false;

  private constructor(
    attachment: IsolatedNetwork,
    allow: readonly AllowedHostPort[],
    dir: string,
    fds: number[],
    slirp: ChildProcess,
    exited: Promise<void>,
    apiSocket: string,
  ) {
    this.attachment = attachment;
    this.allow = allow;
    this.#dir = dir;
    this.#fds = fds;
    this.#slirp = slirp;
    this.#exited = exited;
    this.#apiSocket = apiSocket;
  }

  /** The host pid of this network's slirp4netns (tests check it is gone after close). */
  get helperPid(): number | undefined {
    return this.#slirp.pid;
  }

  static async create(o: SandboxNetworkOptions): Promise<SandboxNetwork> {
    const allow = dedupe(o.allow ?? []);
    const dir = await mkdtemp(path.join(o.tmpDir ?? tmpdir(), 'kiln-net-'));
    const fds: number[] = [];
    let slirp: ChildProcess | undefined;
    try {
      // The sandbox user opens these through bwrap's binds: the dir must be searchable by it.
      await chmod(dir, 0o755);
      const resolvConf = path.join(dir, 'resolv.conf');
      const hosts = path.join(dir, 'hosts');
      await writeFile(resolvConf, `nameserver ${SLIRP.dns}\n`, { mode: 0o644 });
      await writeFile(hosts, '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n', {
        mode: 0o644,
      });

      const root = o.hostUid === 0;
      // Not root, slirp4netns opens the tap device as kiln's user: say so before anything starts.
      if (
        !root &&
        !(await access('/dev/net/tun', constants.R_OK | constants.W_OK).then(
          () => true,
          () => false,
        ))
      )
        throw new KilnError(
          `--network isolated: kiln is not root and /dev/net/tun is not usable by uid ${o.hostUid} (slirp4netns needs it): run kiln as root, make /dev/net/tun mode 0666 (Debian's udev default), or pass --network none`,
        );
      // Rules before anything else runs in the namespace: the child that creates it applies them
      // before it reports the namespace ready (kiln opens it only then). route_localnet lets the
      // DNAT of 127.0.0.1:PORT (allowed loopback ports) leave through the tap device.
      const loopback = allow.some((a) => a.loopback);
      const ns = await newNamespace(root, { rules: firewallRules(allow, hostAddresses()), loopback });
      fds.push(...ns.fds);
      const netns = `/proc/${process.pid}/fd/${ns.netFd}`;
      const userns = ns.userFd !== undefined ? `/proc/${process.pid}/fd/${ns.userFd}` : undefined;

      const apiSocket = path.join(dir, 'slirp.sock');
      const slirpArgs = [
        '--configure',
        '--mtu=65520',
        // The gateway reaches the host's 127.0.0.1 only when a loopback port is allowed (and
        // then the rules above restrict it to those ports).
        ...(loopback ? [] : ['--disable-host-loopback']),
        // Root: drop every capability but NET_BIND_SERVICE and pivot into its own mount namespace.
        // (Not root it already runs as kiln's user; its sandbox fails entering a userns made by
        // another process: "setegid(0)".)
        ...(root ? ['--enable-sandbox'] : []),
        '--enable-seccomp',
        `--api-socket=${apiSocket}`,
        '--ready-fd=3',
        '--exit-fd=4',
        ...(userns ? [`--userns-path=${userns}`] : []),
        '--netns-type=path',
        netns,
        SLIRP.tap,
      ];
      const child = spawn(o.slirp4netns ?? 'slirp4netns', slirpArgs, {
        env: HELPER_ENV,
        // 3: ready (slirp writes "1"); 4: exit (kiln's end; its EOF ends slirp, also when kiln is killed).
        stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
        // Its own process group: a terminal's Ctrl-C goes to kiln, which tears down in order.
        detached: true,
      });
      slirp = child;
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      let err = '';
      child.stderr?.on('data', (b: Buffer) => {
        if (err.length < 4000) err += b.toString('utf8');
      });
      await new Promise<void>((resolve, reject) => {
        const ready = child.stdio[3] as NodeJS.ReadableStream | null;
        ready?.once('data', () => resolve());
        child.once('error', (e) =>
          reject(new KilnError(`isolated network: cannot start slirp4netns: ${e.message}`)),
        );
        child.once('exit', (code) =>
          reject(
            new KilnError(
              `isolated network: slirp4netns exited (${code}) before it was ready: ${err.trim().split('\n').slice(-3).join(' / ')}`,
            ),
          ),
        );
      });
      child.stderr?.removeAllListeners('data');
      child.stderr?.resume();
      child.unref();
      for (const s of [child.stdio[2], child.stdio[3], child.stdio[4]])
        (s as { unref?: () => void } | null)?.unref?.();
      return new SandboxNetwork(
        {
          mode: 'isolated',
          netns,
          ...(userns ? { userns } : {}),
          resolvConf,
          hosts,
          allowed: allow.map((a) => `${a.loopback ? '127.0.0.1' : a.address}:${a.port}`).sort(),
        },
        allow,
        dir,
        fds,
        child,
        exited,
        apiSocket,
      );
    } catch (e) {
      slirp?.kill('SIGKILL');
      for (const fd of fds) closeSync(fd);
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * publish makes the sandbox's `guestPort` (TCP, on its tap address) reachable on the host's
   * 127.0.0.1:`hostPort` (Docker's `-p 127.0.0.1:H:G`). Nothing else is published.
   */
  async publish(hostPort: number, guestPort: number): Promise<void> {
    const req = {
      execute: 'add_hostfwd',
      arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: hostPort, guest_port: guestPort },
    };
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = createConnection(this.#apiSocket);
      let text = '';
      sock.on('connect', () => sock.end(JSON.stringify(req)));
      sock.on('data', (b: Buffer) => {
        text += b.toString('utf8');
      });
      sock.on('end', () => resolve(text));
      sock.on('error', reject);
    }).catch((e: Error) => {
      throw new KilnError(`isolated network: publishing port ${hostPort}: ${e.message}`);
    });
    if (!/"return"/.test(reply)) {
      const why = /"desc"\s*:\s*"([^"]*)"/.exec(reply)?.[1] ?? reply.trim();
      throw new KilnError(`port ${hostPort} could not be published on 127.0.0.1: ${why} (is it in use?)`);
    }
  }

  /** Stops slirp4netns, releases the namespace and removes the private files. Idempotent. */
  /**
   * close ends slirp4netns and releases the namespace. `wait: false` does not wait for slirp to
   * exit (its teardown took 15-40 ms at the end of every build): it is SIGKILLed, the kernel
   * finishes the rest.
   */
  async close(opts: { readonly wait?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // EOF on its exit fd is slirp's own way out; SIGKILL if it lingers.
    (this.#slirp.stdio[4] as NodeJS.WritableStream | null)?.end();
    (this.#slirp.stdio[4] as { destroy?: () => void } | null)?.destroy?.();
    if (opts.wait === false) this.#slirp.kill('SIGKILL');
    const timer = setTimeout(() => this.#slirp.kill('SIGKILL'), 2000);
    if (opts.wait !== false) await this.#exited;
    clearTimeout(timer);
    for (const fd of this.#fds) closeSync(fd);
    await rm(this.#dir, { recursive: true, force: true });
  }
}

function dedupe(allow: readonly AllowedHostPort[]): AllowedHostPort[] {
  const seen = new Map<string, AllowedHostPort>();
  for (const a of allow) seen.set(`${a.loopback ? 'lo' : a.address}:${a.port}`, a);
  return [...seen.values()];
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}

/** The firewall newNamespace applies: iptables-restore input, and whether loopback ports are allowed. */
interface Firewall {
  readonly rules: string;
  readonly loopback: boolean;
}

/**
 * The shell the namespace's creator runs inside it: the firewall first (the rules on fd 3), then
 * "ready" on stdout, then it waits for kiln to have opened the namespace. A failing step names
 * itself on stderr and exits, so nothing is reported ready that has no firewall.
 */
function creatorScript(loopback: boolean): string {
  return [
    ...(loopback
      ? [
          'echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet || { echo "kiln: route_localnet failed" >&2; exit 97; }',
        ]
      : []),
    'iptables-restore <&3 || { echo "kiln: iptables-restore failed (exit $?)" >&2; exit 98; }',
    'exec 3<&-',
    'echo ready',
    'read _',
  ].join('\n');
}

/**
 * newNamespace creates a network namespace (and, not root, a user namespace owning it) with
 * `firewall` applied, and returns kiln-held fds to them. A short-lived `unshare` child creates
 * them, applies the rules inside (as the namespace's root: the same iptables-restore an nsenter
 * into it would run, one node spawn and one exec fewer), reports ready and waits until kiln has
 * opened its /proc/<pid>/ns files, then exits: after that only kiln's fds (and later slirp4netns's
 * tap device) keep the namespace alive, so nothing outlives kiln.
 */
async function newNamespace(
  root: boolean,
  firewall: Firewall,
): Promise<{ netFd: number; userFd?: number; fds: number[] }> {
  const args = [
    ...(root ? [] : ['--user', '--map-root-user']),
    '--net',
    '--',
    'sh',
    '-c',
    creatorScript(firewall.loopback),
  ];
  const child = spawn('unshare', args, { env: HELPER_ENV, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => {
    if (err.length < 4000) err += b.toString('utf8');
  });
  const rulesIn = child.stdio[3] as NodeJS.WritableStream & { on(e: 'error', f: () => void): unknown };
  // A child that fails early closes the pipe: its exit code and stderr tell why.
  rulesIn.on('error', () => {});
  rulesIn.end(firewall.rules);
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('error', (e) =>
        reject(new KilnError(`isolated network: cannot start unshare: ${e.message}`)),
      );
      child.once('exit', (code) => {
        const failed = /^kiln: (.*)$/m.exec(err)?.[1];
        reject(
          new KilnError(
            failed !== undefined
              ? `isolated network: ${failed}: ${firstOther(err)}`
              : `isolated network: cannot create a network namespace (unshare exit ${code}): ${lastLine(err)}${root ? '' : ' (kiln is not root: unprivileged user namespaces must be enabled)'}`,
          ),
        );
      });
    });
    const fds: number[] = [];
    const netFd = openSync(`/proc/${child.pid}/ns/net`, 'r');
    fds.push(netFd);
    let userFd: number | undefined;
    if (!root) {
      userFd = openSync(`/proc/${child.pid}/ns/user`, 'r');
      fds.push(userFd);
    }
    return { netFd, ...(userFd !== undefined ? { userFd } : {}), fds };
  } finally {
    // Its stdin's end lets it exit; nothing waits for that: the namespace is kiln's once the fds
    // are open (or the child failed, and said so above).
    child.stdin.end();
  }
}

/** The first stderr line that is not the creator script's own (the failing tool's reason). */
function firstOther(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '' && !l.startsWith('kiln: ')) ?? ''
  );
}

/**
 * enterPrefix is the command prefix that runs the rest of a sandbox command line in `net`: as
 * root, `nsenter --net=… -S U -G G --` (nsenter also clears the supplementary groups), replacing
 * the uid/gid switch the executor would otherwise do at spawn; not root, it enters the owning
 * user namespace as well.
 */
export function enterPrefix(net: IsolatedNetwork, outer: { uid: number; gid: number } | undefined): string[] {
  if (net.userns !== undefined)
    return ['nsenter', `--user=${net.userns}`, '--preserve-credentials', `--net=${net.netns}`, '--'];
  return [
    'nsenter',
    `--net=${net.netns}`,
    ...(outer ? ['-S', String(outer.uid), '-G', String(outer.gid)] : []),
    '--',
  ];
}

/** The network a build or run uses, ready for RunSpec.network, and how to end it. */
export interface OpenNetwork {
  readonly network: 'none' | 'host' | IsolatedNetwork;
  /** `env` with proxy variables that named the host's loopback rewritten to slirp's gateway. */
  readonly env: Record<string, string>;
  /** One line for the build log (what the sandbox can reach). */
  readonly description: string;
  /** The isolated network itself (for `publish`); undefined for `none` and `host`. */
  readonly sandbox?: SandboxNetwork;
  /** Tears it down; `wait: false` does not wait for the helper's exit (see SandboxNetwork.close). */
  close(opts?: { readonly wait?: boolean }): Promise<void>;
}

/**
 * PendingAttachment is an IsolatedNetwork whose namespace is still being made: `ready` settles
 * when it is, and only then may the paths be read (the executor awaits it first).
 */
class PendingAttachment implements IsolatedNetwork {
  readonly mode = 'isolated' as const;
  readonly allowed: readonly string[];
  readonly ready: Promise<void>;
  #net: SandboxNetwork | undefined;

  constructor(pending: Promise<SandboxNetwork>, allowed: readonly string[]) {
    this.allowed = allowed;
    this.ready = pending.then((n) => {
      this.#net = n;
    });
  }

  #made(): IsolatedNetwork {
    if (!this.#net) throw new KilnError('isolated network: used before it was ready (await `ready`)');
    return this.#net.attachment;
  }
  get netns(): string {
    return this.#made().netns;
  }
  get userns(): string | undefined {
    return this.#made().userns;
  }
  get resolvConf(): string {
    return this.#made().resolvConf;
  }
  get hosts(): string {
    return this.#made().hosts;
  }
}

/**
 * startNetwork is openNetwork without waiting: an isolated network's namespace, rules and
 * slirp4netns (tens of milliseconds) are made while the caller goes on; the attachment's
 * `ready` tells the executor when it may be entered, and a failure surfaces there (and in
 * close). For a build, whose first sandboxed process comes after analyze and restore.
 */
export function startNetwork(
  mode: NetworkMode,
  o: {
    readonly allow?: readonly AllowedHostPort[];
    readonly env?: Readonly<Record<string, string>>;
    readonly hostUid: number;
    readonly tmpDir?: string;
  },
): OpenNetwork {
  if (mode !== 'isolated') return plainNetwork(mode, o.allow ?? [], { ...(o.env ?? {}) });
  const proxies = loopbackProxies({ ...(o.env ?? {}) });
  const allow = dedupe([...(o.allow ?? []), ...proxies.allow]);
  const pending = SandboxNetwork.create({
    allow,
    hostUid: o.hostUid,
    ...(o.tmpDir !== undefined ? { tmpDir: o.tmpDir } : {}),
  });
  const attachment = new PendingAttachment(
    pending,
    allow.map((a) => `${a.loopback ? '127.0.0.1' : a.address}:${a.port}`).sort(),
  );
  // Awaited by the executor (attachment.ready) and by close.
  attachment.ready.catch(() => {});
  return {
    network: attachment,
    env: { ...(o.env ?? {}), ...proxies.env },
    description: isolatedDescription(allow),
    close: async (opts) => {
      const net = await pending.catch(() => undefined);
      await net?.close(opts);
    },
  };
}

function isolatedDescription(allow: readonly AllowedHostPort[]): string {
  const reach = allow.map((a) => `${a.host}:${a.port}`);
  return `isolated (own network namespace, outbound through slirp4netns; host reachable ${reach.length ? `only at ${reach.join(', ')}` : 'nowhere'})`;
}

function plainNetwork(
  mode: 'none' | 'host',
  allow: readonly AllowedHostPort[],
  env: Record<string, string>,
): OpenNetwork {
  if (allow.length > 0)
    throw new UsageError(`--allow-host applies to --network isolated only (the network is "${mode}")`);
  return {
    network: mode,
    env,
    description:
      mode === 'none' ? 'none (loopback only)' : "host (shares this machine's network; not isolated)",
    close: async () => {},
  };
}

/**
 * openNetwork sets up `mode` for one build or run: `isolated` creates a SandboxNetwork allowing
 * `allow` plus the port of any proxy on the host's loopback found in `env` (whose variables are
 * rewritten to reach it); `none` and `host` need nothing.
 */
export async function openNetwork(
  mode: NetworkMode,
  o: {
    readonly allow?: readonly AllowedHostPort[];
    readonly env?: Readonly<Record<string, string>>;
    readonly hostUid: number;
    readonly tmpDir?: string;
  },
): Promise<OpenNetwork> {
  const env = { ...(o.env ?? {}) };
  if (mode !== 'isolated') return plainNetwork(mode, o.allow ?? [], env);
  const proxies = loopbackProxies(env);
  const sandbox = await SandboxNetwork.create({
    allow: [...(o.allow ?? []), ...proxies.allow],
    hostUid: o.hostUid,
    ...(o.tmpDir !== undefined ? { tmpDir: o.tmpDir } : {}),
  });
  return {
    network: sandbox.attachment,
    env: { ...env, ...proxies.env },
    description: isolatedDescription(sandbox.allow),
    sandbox,
    close: (opts) => sandbox.close(opts),
  };
}
