// The isolated network against real parts: a real network namespace, real
// slirp4netns, real bubblewrap sandboxes and real listeners this test starts on the host on
// random ports. Every "unreachable" probe has a control showing the same probe does reach the
// listener with the host network, so a test cannot pass because the probe itself is broken.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { Mount, RunSpec } from '../../src/sandbox/executor.ts';
import {
  firewallRules,
  hostAddresses,
  loopbackProxies,
  openNetwork,
  parseAllowHost,
  SandboxNetwork,
} from '../../src/sandbox/network.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';

const hostUid = process.getuid?.() ?? 0;
const exec = new BubblewrapExecutor({ hostUid });
const UID = 4244;

/** A TCP listener on the host that counts connections and greets each one. */
async function tcpListener(
  host: string,
  port = 0,
): Promise<{ server: Server; port: number; hits: () => number }> {
  let hits = 0;
  const server = createServer((s) => {
    hits++;
    s.on('error', () => {}); // probes hang up at once
    s.end('HELLO\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0, hits: () => hits };
}

/** Two TCP listeners on 127.0.0.1 on neighbouring ports (P and P+1). */
async function neighbourListeners(): Promise<
  [Awaited<ReturnType<typeof tcpListener>>, Awaited<ReturnType<typeof tcpListener>>]
> {
  for (let i = 0; i < 20; i++) {
    const a = await tcpListener('127.0.0.1');
    const b = await tcpListener('127.0.0.1', a.port + 1).catch(() => undefined);
    if (b) return [a, b];
    a.server.close();
  }
  throw new Error('no two free neighbouring ports');
}

/** A UDP socket on the host's 127.0.0.1 that counts datagrams. */
async function udpListener(): Promise<{ socket: Socket; port: number; hits: () => number }> {
  let hits = 0;
  const socket = createSocket('udp4');
  socket.on('message', () => hits++);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return { socket, port: socket.address().port, hits: () => hits };
}

/** The host's npm registry host name, as npm is configured here (never written into the project). */
function registryHost(): string {
  const url = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', cwd: tmpdir() }).trim();
  return new URL(url).hostname;
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    // A zombie is gone for our purposes (its parent has not reaped it yet).
    return !/^State:\s+Z/m.test(execFileSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

async function slirpProcesses(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('slirp4netns\0')) out.push(cmd.replaceAll('\0', ' '));
  }
  return out;
}

describe('isolated network (real netns, slirp4netns, bwrap)', {
  skip: hostUid !== 0 && 'needs root (root-owned network namespace, sandbox as a test uid)',
}, () => {
  let fs: HostRootfs;
  let mounts: Mount[];
  let net: SandboxNetwork;

  before(async () => {
    fs = await makeHostRootfs(UID, UID);
    // The rootfs's own /etc with the mount points for resolv.conf and hosts (as the rootfs cache
    // makes them), so the isolated network's generated files are what the sandbox sees.
    const etc = path.join(fs.rootfs, 'etc');
    for (const f of ['resolv.conf', 'hosts']) await writeFile(path.join(etc, f), '');
    for (const f of ['nsswitch.conf', 'passwd', 'group'])
      await copyFile(path.join('/etc', f), path.join(etc, f));
    for (const d of ['ssl', 'alternatives']) await mkdir(path.join(etc, d));
    mounts = [
      { src: '/usr', dst: '/usr', readonly: true },
      { src: '/etc/ssl', dst: '/etc/ssl', readonly: true },
      { src: '/etc/alternatives', dst: '/etc/alternatives', readonly: true },
      { src: fs.workspace, dst: '/workspace', readonly: false },
    ];
    net = await SandboxNetwork.create({ hostUid });
  });
  after(async () => {
    await net?.close();
    await fs?.cleanup();
  });

  async function run(
    script: string,
    network: RunSpec['network'] = net.attachment,
    env: Record<string, string> = {},
  ) {
    const out: string[] = [];
    const r = await exec.run({
      argv: ['/bin/bash', '-c', script],
      env: { PATH: '/usr/bin:/bin:/usr/sbin', HOME: '/tmp', ...env },
      cwd: '/workspace',
      uid: UID,
      gid: UID,
      rootfs: fs.rootfs,
      mounts,
      network,
      stdout: (l) => out.push(l),
      stderr: (l) => out.push(l),
      timeoutMs: 20_000,
    });
    return { ...r, out, text: out.join('\n') };
  }

  // bash's /dev/tcp: prints CONNECTED and the greeting, or bash's error line.
  const tcpProbe = (host: string, port: number) =>
    `timeout 5 bash -c 'exec 3<>/dev/tcp/${host}/${port} && echo CONNECTED-${host} && head -1 <&3' 2>&1 || echo FAILED-${host}`;

  test('host loopback TCP is unreachable, through 127.0.0.1 and through the gateway', async () => {
    const l = await tcpListener('127.0.0.1');
    try {
      const r = await run(`${tcpProbe('127.0.0.1', l.port)}; ${tcpProbe('10.0.2.2', l.port)}`);
      assert.doesNotMatch(r.text, /CONNECTED/);
      assert.match(r.text, /FAILED-127\.0\.0\.1/);
      assert.match(r.text, /FAILED-10\.0\.2\.2/);
      assert.equal(l.hits(), 0);
      // Control: the same probe with the host network reaches the listener.
      const open = await run(tcpProbe('127.0.0.1', l.port), 'host');
      assert.match(open.text, /CONNECTED-127\.0\.0\.1\nHELLO/);
      assert.equal(l.hits(), 1);
    } finally {
      l.server.close();
    }
  });

  test('host loopback UDP receives nothing', async () => {
    const u = await udpListener();
    try {
      const send = `for h in 127.0.0.1 10.0.2.2; do for i in 1 2 3; do echo ping > /dev/udp/$h/${u.port}; done; done; sleep 0.3; echo SENT`;
      const r = await run(send);
      assert.match(r.text, /SENT/);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(u.hits(), 0);
      const open = await run(send, 'host');
      assert.match(open.text, /SENT/);
      await new Promise((res) => setTimeout(res, 200));
      assert.ok(u.hits() > 0, 'control: the host network delivers the datagrams');
    } finally {
      u.socket.close();
    }
  });

  test('host abstract UNIX sockets are out of reach (they are scoped to the network namespace)', async () => {
    const name = `kiln-test-abstract-${process.pid}-${Date.now()}`;
    // Server and probe both run the system's node, so both spell the abstract address the same
    // way (libuv versions differ in whether the name is padded to the full sockaddr length).
    const server = spawn(
      '/usr/bin/node',
      [
        '-e',
        `require("net").createServer(c=>{console.log("HIT");c.end()}).listen("\\0${name}",()=>console.log("UP"))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    await new Promise<void>((resolve) =>
      server.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('UP')) resolve();
      }),
    );
    try {
      const probe = `/usr/bin/node -e 'require("net").connect("\\0${name}").on("connect",()=>{console.log("CONNECTED");process.exit(0)}).on("error",(e)=>{console.log("FAILED",e.code);process.exit(0)})'`;
      const r = await run(probe);
      assert.match(r.text, /FAILED ECONNREFUSED/);
      const open = await run(probe, 'host');
      assert.match(open.text, /CONNECTED/);
      await new Promise((res) => setTimeout(res, 100));
      assert.equal(out.match(/HIT/g)?.length, 1, 'only the host-network control connected');
    } finally {
      server.kill();
    }
  });

  test("the host's own non-loopback addresses are unreachable (a service bound to 0.0.0.0)", async (t) => {
    const addrs = hostAddresses();
    if (addrs.length === 0) {
      t.skip('this host has no non-loopback IPv4 address');
      return;
    }
    const l = await tcpListener('0.0.0.0');
    try {
      const r = await run(addrs.map((a) => tcpProbe(a, l.port)).join('; '));
      assert.doesNotMatch(r.text, /CONNECTED/);
      for (const a of addrs) assert.match(r.text, new RegExp(`FAILED-${a.replaceAll('.', '\\.')}`));
      assert.equal(l.hits(), 0);
      const open = await run(tcpProbe(addrs[0]!, l.port), 'host');
      assert.match(open.text, /CONNECTED/);
    } finally {
      l.server.close();
    }
  });

  test('link-local 169.254.0.0/16 (the metadata endpoint) is refused at once', async () => {
    const t0 = Date.now();
    const r = await run(`${tcpProbe('169.254.169.254', 80)}; ${tcpProbe('169.254.1.1', 8080)}`);
    assert.doesNotMatch(r.text, /CONNECTED/);
    // Refused by the namespace's rules, not a slow timeout somewhere on the host's side.
    assert.match(r.text, /169\.254\.169\.254\/80: Connection refused/);
    assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
  });

  test('a listener in the sandbox is not published on any host port', async () => {
    // Reserve a free port number, then let the sandbox listen on it.
    const probe = await tcpListener('127.0.0.1');
    const port = probe.port;
    await new Promise<void>((res) => probe.server.close(() => res()));
    const script = `/usr/bin/node -e 'const s=require("net").createServer(c=>c.end("FROM-SANDBOX\\n")).listen(${port},"0.0.0.0",()=>{console.log("LISTENING");setTimeout(()=>process.exit(0),1200)})'`;
    const tryHost = async (host: string) =>
      new Promise<string>((resolve) => {
        const c = connect(port, host);
        c.on('data', (b: Buffer) => resolve(b.toString().trim()));
        c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      });
    const attempt = async (network: RunSpec['network']) => {
      const results: string[] = [];
      const out: string[] = [];
      await exec.run({
        argv: ['/bin/bash', '-c', script],
        env: { PATH: '/usr/bin:/bin' },
        cwd: '/workspace',
        uid: UID,
        gid: UID,
        rootfs: fs.rootfs,
        mounts,
        network,
        stdout: (l) => {
          out.push(l);
          if (l === 'LISTENING')
            void Promise.all([tryHost('127.0.0.1'), ...hostAddresses().map(tryHost)]).then((r) =>
              results.push(...r),
            );
        },
        stderr: (l) => out.push(l),
        timeoutMs: 10_000,
      });
      assert.ok(out.includes('LISTENING'), out.join('\n'));
      return results;
    };
    const isolated = await attempt(net.attachment);
    assert.ok(isolated.length > 0 && isolated.every((r) => r === 'ECONNREFUSED'), isolated.join(','));
    // Control: with the host network the sandbox's listener is a host port.
    const shared = await attempt('host');
    assert.ok(shared.includes('FROM-SANDBOX'), shared.join(','));
  });

  test('DNS works through the generated resolv.conf; outbound HTTPS works with the host CA bundle', async () => {
    const host = registryHost();
    const r = await run(
      `cat /etc/resolv.conf; cat /etc/hosts; getent hosts ${host} && echo RESOLVED; curl -sS -o /dev/null -w 'HTTP %{http_code}\\n' --max-time 15 https://${host}/`,
    );
    assert.match(r.text, /^nameserver 10\.0\.2\.3$/m);
    assert.doesNotMatch(r.text, /10\.255|192\.0\.2/, 'nothing of the host resolver or addresses shows');
    assert.match(r.text, /RESOLVED/);
    assert.match(r.text, /HTTP [23]\d\d/);
  });

  test('the sandbox cannot change the firewall rules; it has a tap device and loopback only', async () => {
    const l = await tcpListener('127.0.0.1');
    try {
      const r = await run(
        `iptables -F 2>&1 | head -1; ip link set tap0 down 2>&1 | head -1; ${tcpProbe('10.0.2.2', l.port)}; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort`,
      );
      assert.match(r.text, /Permission denied|Operation not permitted/);
      assert.match(r.text, /FAILED-10\.0\.2\.2/);
      assert.deepEqual(r.out.slice(-2), ['lo', 'tap0']);
      assert.equal(l.hits(), 0);
    } finally {
      l.server.close();
    }
  });

  test('the namespace kiln gets already holds the firewall (made by the child that creates it)', async () => {
    // What root sees in the namespace right after create(): the rules firewallRules wrote, and
    // route_localnet on exactly when a loopback port is allowed (its DNAT needs it).
    const inNs = (n: SandboxNetwork, cmd: string) =>
      execFileSync('nsenter', [`--net=${n.attachment.netns}`, '--', 'sh', '-c', cmd], { encoding: 'utf8' });
    const rejects = (text: string) => text.split('\n').filter((l) => /-j REJECT/.test(l)).length;
    const plain = inNs(net, 'iptables-save; cat /proc/sys/net/ipv4/conf/all/route_localnet');
    assert.match(plain, /-A OUTPUT -d 169\.254\.0\.0\/16 -p tcp -j REJECT --reject-with tcp-reset/);
    assert.match(plain, /-A OUTPUT -d 10\.0\.2\.0\/24 -j REJECT/);
    assert.ok(rejects(plain) >= 4, plain);
    assert.match(plain, /\n0\n$/);
    const own = await SandboxNetwork.create({ hostUid, allow: [parseAllowHost('127.0.0.1:4873')] });
    try {
      const lo = inNs(own, 'iptables-save; cat /proc/sys/net/ipv4/conf/all/route_localnet');
      assert.match(lo, /-A OUTPUT -d 10\.0\.2\.2\/32 -p tcp -m tcp --dport 4873 -j ACCEPT/);
      assert.match(
        lo,
        /-A OUTPUT -d 127\.0\.0\.1\/32 -p tcp -m tcp --dport 4873 -j DNAT --to-destination 10\.0\.2\.2:4873/,
      );
      assert.match(lo, /\n1\n$/);
    } finally {
      await own.close();
    }
  });

  test('--allow-host reaches exactly the named host port, not its neighbour', async () => {
    const [allowed, neighbour] = await neighbourListeners();
    const own = await SandboxNetwork.create({
      hostUid,
      allow: [parseAllowHost(`127.0.0.1:${allowed.port}`)],
    });
    try {
      const r = await run(
        [
          tcpProbe('127.0.0.1', allowed.port),
          tcpProbe('10.0.2.2', allowed.port),
          tcpProbe('127.0.0.1', neighbour.port),
          tcpProbe('10.0.2.2', neighbour.port),
        ].join('; '),
        own.attachment,
      );
      assert.match(r.text, /CONNECTED-127\.0\.0\.1\nHELLO/);
      assert.match(r.text, /CONNECTED-10\.0\.2\.2\nHELLO/);
      assert.equal(allowed.hits(), 2);
      assert.equal(neighbour.hits(), 0);
      assert.equal((r.text.match(/FAILED/g) ?? []).length, 2, r.text);
    } finally {
      await own.close();
      allowed.server.close();
      neighbour.server.close();
    }
  });

  test('a proxy on host loopback is reached through the gateway (env rewritten), only its port', async () => {
    const [proxy, neighbour] = await neighbourListeners();
    const opened = await openNetwork('isolated', {
      hostUid,
      env: {
        HTTPS_PROXY: `http://user:pw@127.0.0.1:${proxy.port}`,
        https_proxy: `localhost:${proxy.port}`,
        NO_PROXY: 'localhost',
      },
    });
    try {
      assert.equal(opened.env.HTTPS_PROXY, `http://user:pw@10.0.2.2:${proxy.port}`);
      assert.equal(opened.env.https_proxy, `10.0.2.2:${proxy.port}`);
      assert.equal(opened.env.NO_PROXY, 'localhost');
      const r = await run(
        `echo "$HTTPS_PROXY"; ${tcpProbe('10.0.2.2', proxy.port)}; ${tcpProbe('10.0.2.2', neighbour.port)}`,
        opened.network,
        opened.env,
      );
      assert.match(r.text, /CONNECTED-10\.0\.2\.2\nHELLO/);
      assert.equal(proxy.hits(), 1);
      assert.equal(neighbour.hits(), 0);
    } finally {
      await opened.close();
      proxy.server.close();
      neighbour.server.close();
    }
  });

  test('--network none has loopback only', async () => {
    const r = await run("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", 'none');
    assert.deepEqual(r.out, ['lo']);
  });

  test('slirp4netns is gone after close, and when kiln is killed', async () => {
    const own = await SandboxNetwork.create({ hostUid });
    const pid = own.helperPid;
    assert.ok(alive(pid), 'slirp4netns runs while the network is open');
    await own.close();
    assert.ok(!alive(pid), 'slirp4netns is gone after close');
    assert.ok(!(await slirpProcesses()).some((c) => c.includes(`kiln-net-`) && c.includes(String(pid))));

    // A kiln process SIGKILLed with a network open: --exit-fd ends its slirp4netns anyway.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { SandboxNetwork } from ${JSON.stringify(new URL('../../src/sandbox/network.ts', import.meta.url).href)};
         const n = await SandboxNetwork.create({ hostUid: 0 });
         console.log(n.helperPid);
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const helper = await new Promise<number>((resolve) =>
      child.stdout.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))),
    );
    assert.ok(alive(helper));
    child.kill('SIGKILL');
    const until = Date.now() + 5000;
    while (alive(helper) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!alive(helper), 'slirp4netns exited with the killed kiln');
  });
});

describe('isolated network when kiln is not root (best effort: a user-owned network namespace)', {
  skip: hostUid !== 0 && 'needs root to start the non-root kiln stand-in',
}, () => {
  // A stand-in for a non-root kiln: opens an isolated network as uid 1000 and runs a probe in it.
  const script = `
    import { SandboxNetwork } from ${JSON.stringify(new URL('../../src/sandbox/network.ts', import.meta.url).href)};
    import { BubblewrapExecutor } from ${JSON.stringify(new URL('../../src/sandbox/bubblewrap.ts', import.meta.url).href)};
    const uid = process.getuid();
    try {
      const net = await SandboxNetwork.create({ hostUid: uid, tmpDir: '/tmp' });
      const r = await new BubblewrapExecutor({ hostUid: uid }).run({
        argv: ['/bin/bash', '-c', 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | sort | tr "\\n" " "; echo; timeout 3 bash -c "exec 3<>/dev/tcp/10.0.2.2/' + process.argv[1] + ' && echo CONNECTED" 2>/dev/null || echo REFUSED; iptables -F 2>&1 | head -1'],
        env: { PATH: '/usr/bin:/bin:/usr/sbin' }, cwd: '/', uid, gid: uid, rootfs: '/', mounts: [],
        network: net.attachment, stdout: (l) => console.log(l), stderr: (l) => console.log(l),
      });
      await net.close();
      console.log('exit', r.exitCode);
    } catch (e) { console.log('ERROR', e.message); }`;
  const asUser = (port: number, tunMode: string) =>
    new Promise<string>((resolve) => {
      // /dev/net/tun is replaced in a private mount namespace only (this machine's stays as it is).
      const tun = path.join(tmpdir(), `kiln-test-tun-${process.pid}`);
      const sh = `rm -f ${tun}; mknod ${tun} c 10 200 && chmod ${tunMode} ${tun} && mount --bind ${tun} /dev/net/tun && rm -f ${tun} && exec setpriv --reuid=1000 --regid=1000 --clear-groups env HOME=/tmp "$0" --input-type=module -e "$1" ${port}`;
      const c = spawn(
        'unshare',
        ['-m', '--propagation', 'private', 'sh', '-c', sh, process.execPath, script],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      c.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      c.stderr.on('data', (b: Buffer) => {
        out += b.toString();
      });
      c.on('close', () => resolve(out));
    });

  test("with a usable /dev/net/tun: same isolation, rules out of the sandbox's reach", async () => {
    const l = await tcpListener('127.0.0.1');
    try {
      const out = await asUser(l.port, '0666');
      assert.match(out, /^lo tap0 $/m);
      assert.match(out, /REFUSED/);
      assert.match(out, /Permission denied/);
      assert.match(out, /exit 0/);
      assert.equal(l.hits(), 0);
    } finally {
      l.server.close();
    }
  });

  test('without one: one clear line naming /dev/net/tun', async () => {
    const out = await asUser(1, '0600');
    assert.match(
      out,
      /ERROR --network isolated: kiln is not root and \/dev\/net\/tun is not usable by uid 1000/,
    );
  });
});

describe('network settings parsing', () => {
  test('--allow-host takes the host loopback or one of its addresses, with a port', () => {
    assert.deepEqual(parseAllowHost('127.0.0.1:4873', []), {
      host: '127.0.0.1',
      port: 4873,
      loopback: true,
      address: '127.0.0.1',
    });
    assert.equal(parseAllowHost('localhost:80', []).loopback, true);
    assert.equal(parseAllowHost('192.0.2.7:8080', ['192.0.2.7']).loopback, false);
    assert.throws(() => parseAllowHost('127.0.0.1', []), /--allow-host "127.0.0.1": expected HOST:PORT/);
    assert.throws(() => parseAllowHost('127.0.0.1:0', []), /port 1-65535/);
    assert.throws(() => parseAllowHost('127.0.0.1:70000', []), /port 1-65535/);
    assert.throws(() => parseAllowHost('127.0.0.2:80', []), /only 127.0.0.1/);
    assert.throws(
      () => parseAllowHost('example.invalid:443', ['192.0.2.7']),
      /this host's addresses \(192\.0\.2\.7\)/,
    );
  });

  test('loopbackProxies rewrites only proxies on the host loopback and allows their ports', () => {
    const r = loopbackProxies({
      HTTP_PROXY: 'http://127.0.0.1:3128',
      HTTPS_PROXY: 'http://proxy.corp:8080',
      all_proxy: 'socks5://localhost:1080',
    });
    assert.deepEqual(r.env, { HTTP_PROXY: 'http://10.0.2.2:3128', all_proxy: 'socks5://10.0.2.2:1080' });
    assert.deepEqual(r.allow.map((a) => a.port).sort(), [1080, 3128]);
  });

  test('firewall rules: DNS and allowed ports first, then the gateway, link-local and host addresses rejected', () => {
    const rules = firewallRules([parseAllowHost('127.0.0.1:4873', [])], ['192.0.2.2']);
    const lines = rules.split('\n');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    assert.ok(
      at(/-d 10\.0\.2\.2\/32 -p tcp .*--dport 4873 -j ACCEPT/) < at(/-d 10\.0\.2\.0\/24 -p tcp -j REJECT/),
    );
    assert.ok(at(/-d 169\.254\.0\.0\/16 -j REJECT/) > 0);
    assert.ok(at(/-d 192\.0\.2\.2\/32 -j REJECT/) > 0);
    assert.ok(at(/DNAT --to-destination 10\.0\.2\.2:4873/) > 0);
  });
});
