// Network isolation by default through the CLI as a user runs it: `kiln build`
// with no network flag gives buildpacks their own network namespace (slirp4netns for outbound),
// so a hostile buildpack reaches none of the host's listeners the test starts on random ports;
// `--allow-host` opens exactly one port; the Express sample still installs its packages through
// this machine's TLS-intercepting proxy, and `kiln run -p` still serves it on the host.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hostAddresses } from '../../src/sandbox/network.ts';
import { copySample, freePort, httpGet, kiln, prepareHome, runKiln } from './samples-harness.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

async function listen(
  host: string,
  onHit: () => void,
  name?: string,
): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    onHit();
    s.on('error', () => {}); // probes hang up at once
    s.end('HELLO\n');
  });
  await new Promise<void>((resolve) =>
    name !== undefined ? server.listen(name, () => resolve()) : server.listen(0, host, () => resolve()),
  );
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0 };
}

/**
 * slirp4netns helpers of kiln's networks left without their kiln (re-parented to init). Helpers of
 * builds other test files run at the same time still have a living parent and are not counted.
 * A helper exits shortly after its kiln (its exit fd closes): look again for up to 2 s.
 */
async function orphanedSlirps(): Promise<number[]> {
  let found: number[] = [];
  for (let i = 0; i < 20; i++) {
    found = [];
    for (const n of await readdir('/proc')) {
      if (!/^\d+$/.test(n)) continue;
      const cmd = await readFile(`/proc/${n}/cmdline`, 'utf8').catch(() => '');
      if (!cmd.startsWith('slirp4netns\0') || !cmd.includes('kiln-net-')) continue;
      const stat = await readFile(`/proc/${n}/stat`, 'utf8').catch(() => '');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === 1) found.push(Number(n));
    }
    if (found.length === 0) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  return found;
}

function registryHost(): string {
  const url = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', cwd: tmpdir() }).trim();
  return new URL(url).hostname;
}

describe('kiln build isolates the network by default', { skip: !asRoot && 'needs root' }, () => {
  let scratch: string;
  let app: string;
  let bp: string;
  const hits = { tcp: 0, any: 0, udp: 0, abstract: 0, neighbour: 0 };
  const servers: Server[] = [];
  const udp = createSocket('udp4');
  let ports: { tcp: number; any: number; udp: number; neighbour: number };
  const abstract = `kiln-e2e-abstract-${process.pid}`;

  before(async () => {
    await prepareHome();
    scratch = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-net-'));
    await chmod(scratch, 0o755);
    const tcp = await listen('127.0.0.1', () => hits.tcp++);
    const any = await listen('0.0.0.0', () => hits.any++);
    const neighbour = await listen('127.0.0.1', () => hits.neighbour++);
    const abs = await listen('', () => hits.abstract++, `\0${abstract}`);
    servers.push(tcp.server, any.server, neighbour.server, abs.server);
    udp.on('message', () => hits.udp++);
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    ports = { tcp: tcp.port, any: any.port, udp: udp.address().port, neighbour: neighbour.port };

    app = path.join(scratch, 'app');
    await mkdir(app);
    await writeFile(path.join(app, 'README'), 'an app\n');
    // The hostile buildpack: probes every host service it should not reach and reports; never fails.
    bp = path.join(scratch, 'bp');
    await mkdir(path.join(bp, 'bin'), { recursive: true });
    await writeFile(
      path.join(bp, 'buildpack.toml'),
      'api = "0.10"\n[buildpack]\nid = "test/net-probe"\nversion = "0.0.1"\n[[targets]]\nos = "linux"\n',
    );
    await writeFile(path.join(bp, 'bin', 'detect'), '#!/bin/bash\nexit 0\n');
    const tcpProbe = (h: string, p: number) =>
      `timeout 5 bash -c 'exec 3<>/dev/tcp/${h}/${p} && echo PROBE CONNECTED ${h}:${p}' 2>/dev/null || echo PROBE REFUSED ${h}:${p}`;
    const script = [
      '#!/bin/bash',
      tcpProbe('127.0.0.1', ports.tcp),
      tcpProbe('10.0.2.2', ports.tcp),
      tcpProbe('127.0.0.1', ports.neighbour),
      ...hostAddresses().map((a) => tcpProbe(a, ports.any)),
      tcpProbe('169.254.169.254', 80),
      `for h in 127.0.0.1 10.0.2.2; do echo x > /dev/udp/$h/${ports.udp}; done 2>/dev/null`,
      `python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect("\\0${abstract}"); print("PROBE CONNECTED abstract")' 2>/dev/null || echo PROBE REFUSED abstract`,
      `getent hosts ${registryHost()} >/dev/null && echo PROBE RESOLVED`,
      'exit 0',
      '',
    ].join('\n');
    await writeFile(path.join(bp, 'bin', 'build'), script, { mode: 0o755 });
    await chmod(path.join(bp, 'bin', 'detect'), 0o755);
  });
  after(async () => {
    for (const s of servers) s.close();
    udp.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test('a default-settings buildpack reaches nothing of the host; DNS works; no helper is left', async () => {
    const res = await kiln(['build', 'kiln-e2e-net-probe', '--path', app, '--buildpack', bp]);
    assert.equal(res.code, 0, res.stderr);
    const out = res.stdout + res.stderr;
    assert.match(out, /Network: isolated/);
    assert.doesNotMatch(out, /PROBE CONNECTED/);
    assert.match(out, new RegExp(`PROBE REFUSED 127\\.0\\.0\\.1:${ports.tcp}`));
    assert.match(out, /PROBE REFUSED 169\.254\.169\.254:80/);
    assert.match(out, /PROBE REFUSED abstract/);
    assert.match(out, /PROBE RESOLVED/);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(hits, { tcp: 0, any: 0, udp: 0, abstract: 0, neighbour: 0 });
    assert.deepEqual(await orphanedSlirps(), [], 'no slirp4netns left');
  });

  test('--allow-host 127.0.0.1:PORT opens that port only', async () => {
    const res = await kiln([
      'build',
      'kiln-e2e-net-probe',
      '--path',
      app,
      '--buildpack',
      bp,
      '--allow-host',
      `127.0.0.1:${ports.tcp}`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    const out = res.stdout + res.stderr;
    assert.match(out, new RegExp(`PROBE CONNECTED 127\\.0\\.0\\.1:${ports.tcp}`));
    assert.match(out, new RegExp(`PROBE CONNECTED 10\\.0\\.2\\.2:${ports.tcp}`));
    assert.match(out, new RegExp(`PROBE REFUSED 127\\.0\\.0\\.1:${ports.neighbour}`));
    assert.match(out, /PROBE REFUSED abstract/);
    assert.equal(hits.tcp, 2);
    assert.equal(hits.neighbour, 0);
    assert.equal(hits.any, 0);
  });

  test('--network host is taken only when asked, with a warning (and then the host is reachable)', async () => {
    const res = await kiln([
      'build',
      'kiln-e2e-net-probe',
      '--path',
      app,
      '--buildpack',
      bp,
      '--network',
      'host',
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /Warning: --network host: the sandbox shares this machine's network/);
    assert.match(res.stdout + res.stderr, new RegExp(`PROBE CONNECTED 127\\.0\\.0\\.1:${ports.tcp}`));
  });

  test('the Express sample installs through the intercepting proxy by default and kiln run -p serves it', async () => {
    const sample = await copySample('node-express');
    try {
      const image = 'kiln-e2e-net-express';
      // --clear-cache: the packages really come through the proxy, not from the cache.
      const res = await kiln(['build', image, '--path', sample.dir, '--clear-cache']);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stderr, /Network: isolated/);
      const port = await freePort();
      const run = runKiln([image, '-p', String(port)]);
      try {
        assert.equal(await httpGet(port, 60_000), 'Hello from kiln: node-express\n');
      } finally {
        const out = await run.stop();
        assert.match(out.stderr, new RegExp(`published at http://127\\.0\\.0\\.1:${port}/`));
      }
      assert.deepEqual(await orphanedSlirps(), [], 'no slirp4netns left');
    } finally {
      await sample.cleanup();
    }
  });
});
