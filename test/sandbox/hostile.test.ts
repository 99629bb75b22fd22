// Hostile buildpack behaviour against the bubblewrap sandbox (SECURITY.md, the sandbox boundary): each case is something a
// malicious or broken buildpack would try; each must be contained and reported clearly. Every
// attack is paired with a control that shows the same probe succeeds without the sandbox's
// protection, so the test cannot pass by accident.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BubblewrapExecutor } from '../../src/sandbox/bubblewrap.ts';
import type { RunSpec } from '../../src/sandbox/executor.ts';
import { type HostRootfs, makeHostRootfs } from '../helpers/sandbox-rootfs.ts';
import { listenLoopback, plantSetuidEuidProbe } from './hostile-harness.ts';

const execFileP = promisify(execFile);
const hostUid = process.getuid?.() ?? 0;
const exec = new BubblewrapExecutor({ hostUid });
// A uid nobody else on the machine uses, so the per-uid process limit counts only this test.
const UID = 4242;

describe('hostile buildpacks are contained', {
  skip: hostUid !== 0 && 'needs root to switch to a test uid',
}, () => {
  let fs: HostRootfs;
  let secrets: string;
  before(async () => {
    fs = await makeHostRootfs(UID, UID);
    // What a kiln process holds: a docker config with registry credentials and env tokens.
    secrets = await mkdtemp(path.join(tmpdir(), 'kiln-secrets-'));
    await mkdir(path.join(secrets, '.docker'));
    await writeFile(
      path.join(secrets, '.docker', 'config.json'),
      '{"auths":{"r.example":{"auth":"Q0FOQVJZLUNSRUQ="}}}',
    );
    await chmod(secrets, 0o755); // even world-readable, it must not be reachable
  });
  after(async () => {
    await fs.cleanup();
    await rm(secrets, { recursive: true, force: true });
  });

  const spec = (script: string, over: Partial<RunSpec> = {}): RunSpec => ({
    argv: ['/bin/bash', '-c', script],
    env: { PATH: '/usr/bin:/bin', HOME: '/home/cnb' },
    cwd: '/workspace',
    uid: UID,
    gid: UID,
    rootfs: fs.rootfs,
    mounts: fs.mounts,
    network: 'none',
    ...over,
  });
  async function run(script: string, over: Partial<RunSpec> = {}) {
    const out: string[] = [];
    const r = await exec.run(
      spec(script, { stdout: (l) => out.push(l), stderr: (l) => out.push(l), ...over }),
    );
    return { ...r, out, text: out.join('\n') };
  }

  test('cannot read the kiln process environment or its docker config', async () => {
    process.env.KILN_REGISTRY_TOKEN = 'CANARY-ENV-TOKEN';
    process.env.DOCKER_CONFIG = path.join(secrets, '.docker');
    try {
      const r = await run(
        `env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat ${secrets}/.docker/config.json; ls /root; ls -a /home; echo pids: $(ls /proc | grep -c '^[0-9]')`,
      );
      assert.doesNotMatch(r.text, /CANARY-ENV-TOKEN|Q0FOQVJZLUNSRUQ=|DOCKER_CONFIG/);
      assert.match(r.text, /No such file or directory/);
      // Control: the same secrets are there for anyone outside the sandbox.
      assert.equal(process.env.KILN_REGISTRY_TOKEN, 'CANARY-ENV-TOKEN');
    } finally {
      delete process.env.KILN_REGISTRY_TOKEN;
      delete process.env.DOCKER_CONFIG;
    }
  });

  test('cannot write outside /workspace, /layers and /tmp', async () => {
    const r = await run(
      'for p in /x /etc/x /usr/x /cnb/x /platform/x /proc/x /dev/x; do touch $p 2>&1 && echo "WROTE $p"; done; touch /workspace/ok /layers/ok /tmp/ok && echo writable-ok; echo x > /dev/null && head -c1 /dev/urandom >/dev/null && echo devices-ok; dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 2>&1',
      { limits: { tmpfsBytes: 8 << 20 } },
    );
    assert.doesNotMatch(r.text, /WROTE/);
    assert.match(r.text, /touch: cannot touch '\/etc\/x': Read-only file system/);
    assert.match(r.text, /writable-ok/);
    assert.match(r.text, /devices-ok/);
    // /dev/shm is private to the sandbox and as bounded as /tmp.
    assert.match(r.text, /dd: error writing '\/dev\/shm\/fill': No space left on device/);
    assert.ok(
      r.notes.some((n) => /read-only file system/.test(n)),
      r.notes.join('; '),
    );
  });

  test('cannot reach a loopback server on the host with network none', async () => {
    let connections = 0;
    const { server, port } = await listenLoopback(() => {
      connections++;
    });
    try {
      const probe = `exec 3<>/dev/tcp/127.0.0.1/${port} && echo CONNECTED`;
      const blocked = await run(probe);
      assert.doesNotMatch(blocked.text, /CONNECTED/);
      assert.match(blocked.text, /Connection refused/);
      assert.equal(connections, 0);
      // Control: with the host network the same probe connects.
      const open = await run(probe, { network: 'host' });
      assert.match(open.text, /CONNECTED/);
      assert.equal(connections, 1);
      const ifaces = await run('cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " "');
      assert.deepEqual(ifaces.out, ['lo']);
    } finally {
      server.close();
    }
  });

  test('a setuid file gives no privilege', async () => {
    // A static probe that prints its effective uid, planted setuid-root as a hostile image layer would.
    const src = path.join(fs.dir, 'euid.c');
    const bin = path.join(fs.workspace, 'euid');
    await plantSetuidEuidProbe(src, bin);
    // Control: outside the sandbox, as the same uid, the setuid bit does work.
    const control = await execFileP('setpriv', [`--reuid=${UID}`, `--regid=${UID}`, '--clear-groups', bin]);
    assert.equal(control.stdout.trim(), 'euid=0');
    const r = await run(
      '/workspace/euid; cp /workspace/euid /tmp/e && chmod u+s /tmp/e && /tmp/e; ls -l /tmp/e | cut -c1-10',
    );
    assert.deepEqual(r.out, [`euid=${UID}`, `euid=${UID}`, '-rwsr-xr-x']);
  });

  test('a fork bomb is contained by the process limit and the time limit', async () => {
    const r = await run(':(){ :|:& };:; sleep 30', {
      limits: { processes: 64 },
      timeoutMs: 3000,
      graceMs: 200,
    });
    assert.ok(r.timedOut || r.exitCode !== 0);
    assert.ok(
      r.notes.some((n) => /the process limit of 64 processes was reached/.test(n)),
      r.notes.join('; '),
    );
    // Nothing of the bomb survives on the host (the kernel may take a moment to tear it down).
    let left: number[] = [];
    for (let i = 0; i < 50; i++) {
      left = [];
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        try {
          if ((await stat(`/proc/${pid}`)).uid === UID) left.push(Number(pid));
        } catch {
          // exited meanwhile
        }
      }
      if (left.length === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.deepEqual(left, []);
  });

  test('filling /tmp stops at the tmpfs size and is reported', async () => {
    const r = await run('dd if=/dev/zero of=/tmp/fill bs=1M count=64', { limits: { tmpfsBytes: 8 << 20 } });
    assert.notEqual(r.exitCode, 0);
    assert.match(r.text, /No space left on device/);
    assert.ok(
      r.notes.includes(
        'a filesystem filled up (No space left on device): in-memory /tmp is limited to 8 MiB each',
      ),
      r.notes.join('; '),
    );
  });

  test('a single huge file in /workspace is stopped by the file size limit', async () => {
    const r = await run('dd if=/dev/zero of=/workspace/huge bs=1M count=32', {
      limits: { fileSizeBytes: 4 << 20 },
    });
    assert.notEqual(r.exitCode, 0);
    assert.ok(
      r.signal === 'SIGXFSZ' || r.notes.some((n) => /file size limit/.test(n)),
      `${r.signal} ${r.notes.join('; ')}`,
    );
  });
});
