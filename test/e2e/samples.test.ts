import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Podman } from '../helpers/podman.ts';
import {
  copySample,
  freePort,
  httpGet,
  kilnOk,
  podmanOnKilnStore,
  ROOT,
  runKiln,
  storedImage,
} from './samples-harness.ts';

// Each sample builds with no flags (the embedded default builder), runs with `kiln run`
// and with podman as the run user (uid 1001) on the shell-free run image, and answers on its port.

let podman: Podman;
/** The e2e store as podman sees it: a symlink without dots in its path (podman names images after it). */
let podmanStore: string;

before(async () => {
  ({ podman, store: podmanStore } = await podmanOnKilnStore());
});
after(async () => {
  await podman?.cleanup();
});

/** podmanServe runs the image with podman (host network) until `check` is done, then stops it. */
async function podmanServe(name: string, port: number, check: () => Promise<void>): Promise<string> {
  const container = `kiln-e2e-${randomBytes(4).toString('hex')}`;
  const ref = `oci:${podmanStore}:docker.io/library/${name}:latest`;
  const running = podman.run(ref, [], {
    network: 'host',
    env: { PORT: String(port) },
    flags: ['--name', container],
    timeoutMs: 60_000,
  });
  try {
    await check();
  } finally {
    // The app is PID 1 in the container and may ignore SIGTERM: stop, then make sure it is gone.
    const stopped = await podman.exec(['stop', '-t', '2', container]);
    if (stopped.code !== 0) await podman.exec(['kill', container]);
    await podman.exec(['rm', '-f', container]);
  }
  const res = await running;
  return res.stdout + res.stderr;
}

async function sample(
  name: string,
  answer: string,
  prepare?: (dir: string) => void,
  from?: string,
): Promise<void> {
  const { dir, cleanup } = await copySample(name, from);
  try {
    prepare?.(dir);
    // A stable name per sample: later runs of this file build warm, with the cache of earlier ones.
    const image = `kiln-e2e-${name}`;
    await kilnOk(['build', image, '--path', dir]);

    const port = await freePort();
    const run = runKiln([image, '-p', String(port)]);
    try {
      assert.equal(await httpGet(port), answer);
    } finally {
      await run.stop();
    }

    const port2 = await freePort();
    const out = await podmanServe(image, port2, async () => {
      assert.equal(await httpGet(port2, 60_000), answer);
    });
    assert.doesNotMatch(out, /Error/);
    // It runs as the image's user, the stack's run user 1001 (not the build user 1000), on the
    // run image, which has no shell.
    const cfg = await (await storedImage(image)).configFile();
    assert.equal(cfg.config?.User, '1001:1000');
    const sh = await podman.run(`oci:${podmanStore}:docker.io/library/${image}:latest`, ['-c', 'true'], {
      entrypoint: '/bin/sh',
    });
    assert.notEqual(sh.code, 0);
    assert.match(sh.stderr, /\/bin\/sh.*(no such file|not found)/i);
  } finally {
    await cleanup();
  }
}

describe('samples build with no flags and answer on their port', () => {
  test('static-binary (C, built to a static binary by the sample build step; Procfile web)', async () => {
    await sample('static-binary', 'Hello from kiln: static-binary\n', (dir) => {
      execFileSync('sh', [path.join(dir, 'build.sh')]);
    });
  });

  test('node-procfile (no dependencies; Procfile web and worker)', async () => {
    await sample('node-procfile', 'Hello from kiln: node-procfile\n');
  });

  test('node-procfile worker runs with --process worker', async () => {
    const image = 'kiln-e2e-node-procfile';
    const run = runKiln([image, '--process', 'worker']);
    const until = Date.now() + 20_000;
    while (!run.output().includes('node-procfile worker started') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const res = await run.stop();
    assert.match(res.stdout + res.stderr, /node-procfile worker started/);
  });

  test("python (kiln/python: the build image's python3 shipped as a launch layer)", async () => {
    await sample(
      'python-app',
      'Hello from kiln: python\n',
      undefined,
      path.join(ROOT, 'test/buildpacks/testdata/python-app'),
    );
  });

  test('node-express (Express with a lock file)', async () => {
    await sample('node-express', 'Hello from kiln: node-express\n');
  });
});
