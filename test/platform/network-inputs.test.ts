// Integration: the platform inputs (bindings, CA certificates, proxies, npm registry) inside the real bubblewrap sandbox. A test CA and an
// HTTPS server on 127.0.0.1 stand in for a TLS-intercepting proxy; tools in the sandbox (curl,
// Node.js) must fail without the extra CA and succeed with it, without any change to the build
// image; bindings must be readable by the build user, read-only, and redacted from output.
// The last case goes through this machine's real intercepting proxy when the npm registry is
// reachable (see shared/machine-notes.md).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redactor } from '../../src/internal/redactor.ts';
import { readBindingDir } from '../../src/platform/bindings.ts';
import {
  hostCaBundlePath,
  type PlatformInputs,
  preparePlatformInputs,
} from '../../src/platform/platform-inputs.ts';
import { TlsFailureDetector } from '../../src/platform/tls-hint.ts';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { Mount, RunSpec } from '../../src/sandbox/executor.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';

const exec = new BubblewrapExecutor({ hostUid: process.getuid?.() ?? 0 });
const CANARY = 'binding-canary-c0ffee-4242';

let fs: HostRootfs;
let ca: TestCa;
let server: Server;
let port: number;
let scratch: string;
/** A stand-in build image bundle (no test CA, no proxy CA), over the host's /etc/ssl/certs. */
let imageCerts: string;
let imageMounts: Mount[];

before(async () => {
  fs = await makeHostRootfs();
  ca = await makeTestCa('kiln sandbox test CA');
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-netin-'));
  await chmod(scratch, 0o755); // the sandbox user must reach mount sources
  // The "build image" trusts one unrelated CA only: the proxy's CA and the test CA are unknown to it.
  const other = await makeTestCa('unrelated CA');
  imageCerts = path.join(scratch, 'image-etc-ssl-certs');
  await mkdir(imageCerts);
  await writeFile(path.join(imageCerts, 'ca-certificates.crt'), other.caPem);
  await other.cleanup();
  imageMounts = [...fs.extraMounts, { src: imageCerts, dst: '/etc/ssl/certs', readonly: true }];
  server = createServer({ cert: ca.serverCert, key: ca.serverKey }, (_req, res) =>
    res.end('hello over tls\n'),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  await new Promise((r) => server.close(r));
  await fs.cleanup();
  await ca.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

/** A rootfs view for prepareCaTrust: its etc/ssl/certs is the image bundle above. */
async function imageRootfs(): Promise<string> {
  const root = path.join(scratch, 'image-rootfs');
  await mkdir(path.join(root, 'etc', 'ssl'), { recursive: true });
  await rm(path.join(root, 'etc', 'ssl', 'certs'), { force: true, recursive: true });
  await mkdir(path.join(root, 'etc', 'ssl', 'certs'));
  await writeFile(
    path.join(root, 'etc', 'ssl', 'certs', 'ca-certificates.crt'),
    await readFile(path.join(imageCerts, 'ca-certificates.crt')),
  );
  return root;
}

async function inputs(
  name: string,
  opts: { caCertFiles?: string[]; hostCaBundle?: string; redactor?: Redactor },
) {
  const credsSrc = path.join(scratch, `${name}-creds`);
  await mkdir(credsSrc, { recursive: true });
  await writeFile(path.join(credsSrc, 'type'), 'secret-store');
  await writeFile(path.join(credsSrc, 'token'), `${CANARY}\n`);
  const platformDir = path.join(scratch, `${name}-platform`);
  const r = await preparePlatformInputs({
    platformDir,
    stageDir: path.join(scratch, `${name}-stage`),
    buildRootfs: await imageRootfs(),
    env: { BP_GREETING: 'hi' },
    userEnv: {},
    kilnEnv: {},
    bindings: [await readBindingDir('creds', credsSrc)],
    caCertFiles: opts.caCertFiles ?? [],
    ...(opts.hostCaBundle !== undefined && { hostCaBundle: opts.hostCaBundle }),
    redactor: opts.redactor ?? new Redactor(),
    uid: 1000,
    gid: 1000,
  });
  return { platformDir, r };
}

function spec(platformDir: string, r: PlatformInputs, argv: string[], network: 'host' | 'none'): RunSpec {
  return {
    argv,
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp', ...r.env },
    cwd: '/workspace',
    uid: 1000,
    gid: 1000,
    rootfs: fs.rootfs,
    mounts: [
      ...imageMounts,
      { src: fs.workspace, dst: '/workspace', readonly: false },
      { src: fs.layers, dst: '/layers', readonly: false },
      { src: platformDir, dst: '/platform', readonly: true },
      ...r.mounts,
    ],
    network,
  };
}

async function run(s: RunSpec) {
  const out: string[] = [];
  const res = await exec.run({
    ...s,
    stdout: (l) => out.push(l),
    stderr: (l) => out.push(l),
    timeoutMs: 60_000,
  });
  return { code: res.exitCode, out: out.join('\n') };
}

describe('extra CA certificates in the sandbox', () => {
  test('curl and Node.js fail without the CA and succeed with --ca-certs', async () => {
    const url = `https://127.0.0.1:${port}/`;
    const without = await inputs('noca', {});
    const curl = ['/usr/bin/curl', '-sS', '--max-time', '10', url];
    const node = [
      '/usr/bin/node',
      '-e',
      `fetch(${JSON.stringify(url)}).then(r=>r.text()).then(t=>process.stdout.write(t))`,
    ];
    const c0 = await run(spec(without.platformDir, without.r, curl, 'host'));
    assert.notEqual(c0.code, 0, c0.out);
    assert.match(c0.out, /certificate/i);
    const n0 = await run(spec(without.platformDir, without.r, node, 'host'));
    assert.notEqual(n0.code, 0);
    // The failures are recognised and explained (one line saying how to trust the CA), for each tool's own wording.
    const git = ['/usr/bin/git', '-c', 'http.lowSpeedTime=10', 'ls-remote', url];
    const g0 = await run({
      ...spec(without.platformDir, without.r, git, 'host'),
      env: { PATH: '/usr/bin:/bin', HOME: '/tmp' },
    });
    assert.notEqual(g0.code, 0);
    for (const res of [c0, n0, g0]) {
      const d = new TlsFailureDetector();
      for (const line of res.out.split('\n')) d.observe(line);
      assert.match(d.hint() ?? `no hint for: ${res.out}`, /^certificate not trusted: .*--ca-certs/);
    }

    const withCa = await inputs('ca', { caCertFiles: [ca.caFile] });
    const c1 = await run(spec(withCa.platformDir, withCa.r, curl, 'host'));
    assert.deepEqual([c1.code, c1.out], [0, 'hello over tls']);
    const n1 = await run(spec(withCa.platformDir, withCa.r, node, 'host'));
    assert.deepEqual([n1.code, n1.out], [0, 'hello over tls']);
    // Without the env vars too: the mount over the image's bundle path is enough for curl.
    const bare = await run({
      ...spec(withCa.platformDir, withCa.r, curl, 'host'),
      env: { PATH: '/usr/bin:/bin' },
    });
    assert.deepEqual([bare.code, bare.out], [0, 'hello over tls']);
    // The ca-certificates binding is there for binding-aware buildpacks.
    const ls = await run(
      spec(
        withCa.platformDir,
        withCa.r,
        [
          '/bin/sh',
          '-c',
          'cat $SERVICE_BINDING_ROOT/ca-certificates/type; echo; ls $SERVICE_BINDING_ROOT/ca-certificates | wc -l',
        ],
        'none',
      ),
    );
    assert.deepEqual([ls.code, ls.out], [0, 'ca-certificates\n3']);
  });

  const registry = (() => {
    try {
      return execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', cwd: '/' }).trim();
    } catch {
      return '';
    }
  })();
  const reachable = (() => {
    if (!registry.startsWith('https://')) return false;
    try {
      execFileSync('curl', ['-sS', '-o', '/dev/null', '--max-time', '10', registry], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  test('through the real intercepting proxy: the npm registry needs the host bundle', {
    skip: !reachable && 'npm registry not reachable',
  }, async () => {
    const curl = [
      '/usr/bin/curl',
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '20',
      registry,
    ];
    const without = await inputs('nohost', {});
    const c0 = await run(spec(without.platformDir, without.r, curl, 'host'));
    assert.notEqual(c0.code, 0, `an image that does not trust the proxy CA must fail: ${c0.out}`);
    const withHost = await inputs('host', { hostCaBundle: hostCaBundlePath({}) });
    const c1 = await run(spec(withHost.platformDir, withHost.r, curl, 'host'));
    assert.equal(c1.code, 0, c1.out);
    assert.match(c1.out, /^[23]\d\d$/);
  });
});

describe('bindings in the sandbox', () => {
  test('readable by the build user at $SERVICE_BINDING_ROOT, read-only, and redacted from output', async () => {
    const redactor = new Redactor();
    const { platformDir, r } = await inputs('bind', { redactor });
    const script = [
      'cat $SERVICE_BINDING_ROOT/creds/token',
      'cat /platform/env/BP_GREETING; echo',
      'id -u',
      'touch /platform/bindings/creds/new 2>/dev/null && echo WROTE || echo readonly',
    ].join('; ');
    const lines: string[] = [];
    const res = await exec.run({
      ...spec(platformDir, r, ['/bin/sh', '-c', script], 'none'),
      stdout: redactor.lineFilter((l) => lines.push(l)),
      stderr: redactor.lineFilter((l) => lines.push(l)),
    });
    assert.equal(res.exitCode, 0);
    assert.deepEqual(lines, ['[REDACTED]', 'hi', '1000', 'readonly']);
    assert.ok(!lines.join('\n').includes(CANARY));
  });
});
