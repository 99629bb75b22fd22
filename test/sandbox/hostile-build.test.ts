// Hostile buildpacks through the real build phase (SECURITY.md, the sandbox boundary): each one tries
// something a malicious buildpack would; each is contained and the build reports it clearly.
// Runs kiln's detect + build phases (src/lifecycle) on the bubblewrap executor via the conformance
// harness, as uid 1000 with network none.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { KilnError } from '../../src/internal/errors.ts';
import { type Fixture, makeFixture } from '../conformance/harness.ts';
import { listenLoopback, plantSetuidEuidProbe } from './hostile-harness.ts';

const _execFileP = promisify(execFile);
const asRoot = (process.getuid?.() ?? 0) === 0;
const DETECT = 'exit 0';

describe('hostile buildpacks in a build', { skip: !asRoot && 'needs root (build as uid 1000)' }, () => {
  let f: Fixture;
  let secrets: string;
  before(async () => {
    f = await makeFixture();
    secrets = await mkdtemp(path.join(tmpdir(), 'kiln-creds-'));
    await mkdir(path.join(secrets, '.docker'));
    await writeFile(
      path.join(secrets, '.docker', 'config.json'),
      '{"auths":{"r.example":{"auth":"SE9TVElMRS1DQU5BUlk="}}}',
    );
    await chmod(secrets, 0o755);
  });
  after(async () => {
    await f.cleanup();
    await rm(secrets, { recursive: true, force: true });
  });

  async function failure(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof KilnError, String(e));
      return e.message;
    }
    assert.fail('the build was expected to fail');
  }

  test('registry credentials are out of reach (env, kiln process, docker config)', async () => {
    process.env.KILN_TEST_REGISTRY_PASSWORD = 'HOSTILE-ENV-CANARY';
    process.env.DOCKER_CONFIG = path.join(secrets, '.docker');
    try {
      const bp = await f.inline({
        id: 'hostile/creds',
        detect: DETECT,
        build: `set +e; layers="$1"; { env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat ${secrets}/.docker/config.json /root/.docker/config.json "$HOME/.docker/config.json" 2>&1; ls /root 2>&1; } > "$layers/loot.txt"; exit 0`,
      });
      await f.detectAndBuild([bp.id]);
      const loot = await f.layerFile(bp.id, 'loot.txt');
      assert.doesNotMatch(loot, /HOSTILE-ENV-CANARY|SE9TVElMRS1DQU5BUlk=|must-not-leak|DOCKER_CONFIG/);
      assert.match(loot, /No such file or directory/);
    } finally {
      delete process.env.KILN_TEST_REGISTRY_PASSWORD;
      delete process.env.DOCKER_CONFIG;
    }
  });

  test('a write outside /layers and /workspace fails the build with a clear reason', async () => {
    const bp = await f.inline({
      id: 'hostile/writer',
      detect: DETECT,
      build: 'echo pwned > /etc/kiln-pwned',
    });
    const msg = await failure(f.detectAndBuild([bp.id]));
    assert.match(msg, /buildpack hostile\/writer@0\.0\.1 failed: bin\/build exited with status 1/);
    assert.match(msg, /a write outside the writable directories was refused \(read-only file system\)/);
  });

  test('a loopback server on the host is unreachable with network none', async () => {
    let connections = 0;
    const { server, port } = await listenLoopback(() => {
      connections++;
    });
    try {
      const bp = await f.inline({
        id: 'hostile/net',
        detect: DETECT,
        build: `exec 3<>/dev/tcp/127.0.0.1/${port} && echo CONNECTED`,
      });
      const msg = await failure(f.detectAndBuild([bp.id]));
      assert.match(msg, /hostile\/net@0\.0\.1 failed: bin\/build exited with status 1/);
      assert.equal(connections, 0);
      assert.doesNotMatch(f.log.text(), /CONNECTED/);
      assert.match(f.log.text(), /Connection refused/);
    } finally {
      server.close();
    }
  });

  test('a setuid-root program gives the buildpack no privilege', async () => {
    const src = path.join(f.dir, 'euid.c');
    const bin = path.join(f.app, 'euid');
    await plantSetuidEuidProbe(src, bin);
    const bp = await f.inline({
      id: 'hostile/setuid',
      detect: DETECT,
      build:
        'layers="$1"; /workspace/euid > "$layers/euid.txt"; cp /workspace/euid /tmp/e && chmod 4755 /tmp/e && /tmp/e >> "$layers/euid.txt"',
    });
    await f.detectAndBuild([bp.id]);
    assert.equal(await f.layerFile(bp.id, 'euid.txt'), 'euid=1000\neuid=1000\n');
  });

  test('a fork bomb is stopped by the process limit and reported', async () => {
    const bp = await f.inline({
      id: 'hostile/forkbomb',
      detect: DETECT,
      // The bomb's first generation ends at once (each forks and returns): `wait` alone let the
      // step end before a loaded machine had made 200 processes. It runs on until the limit bites.
      build: ':(){ :|:& };:; sleep 4; exit 1',
    });
    const msg = await failure(f.detectAndBuild([bp.id], { limits: { processes: 200 }, timeoutMs: 30000 }));
    assert.match(msg, /hostile\/forkbomb@0\.0\.1 failed: bin\/build/);
    assert.match(msg, /the process limit of 200 processes was reached/);
  });

  test('filling /tmp stops at the tmpfs limit and is reported', async () => {
    const bp = await f.inline({
      id: 'hostile/disk',
      detect: DETECT,
      build: 'dd if=/dev/zero of=/tmp/fill bs=1M count=1000',
    });
    const msg = await failure(f.detectAndBuild([bp.id], { limits: { tmpfsBytes: 16 << 20 } }));
    assert.match(msg, /hostile\/disk@0\.0\.1 failed: bin\/build exited with status 1/);
    assert.match(
      msg,
      /a filesystem filled up \(No space left on device\): in-memory \/tmp is limited to 16 MiB each/,
    );
  });
});
