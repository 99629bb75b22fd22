import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { copySample, freePort, httpGet, KILN_HOME, kilnOk, prepareHome, runKiln } from './samples-harness.ts';

// Issue 5: each sample builds with no flags (the embedded default builder), runs with `kiln run`
// and with podman as uid 1000 on the shell-free run image, and answers on its port.

const id = randomBytes(4).toString('hex');
let podman: Podman;

before(async () => {
  await prepareHome();
  podman = await startPodman();
});
after(async () => {
  await podman?.cleanup();
});

/** podmanServe runs the image with podman (host network) until `check` is done, then stops it. */
async function podmanServe(name: string, port: number, check: () => Promise<void>): Promise<string> {
  const container = `kiln-e2e-${randomBytes(4).toString('hex')}`;
  const ref = `oci:${path.join(KILN_HOME, 'images')}:docker.io/library/${name}:latest`;
  const running = podman.run(ref, [], {
    network: 'host',
    env: { PORT: String(port) },
    flags: ['--name', container],
    timeoutMs: 60_000,
  });
  try {
    await check();
  } finally {
    await podman.exec(['stop', '-t', '2', container]);
  }
  const res = await running;
  return res.stdout + res.stderr;
}

async function sample(name: string, answer: string, prepare?: (dir: string) => void): Promise<void> {
  const { dir, cleanup } = await copySample(name);
  try {
    prepare?.(dir);
    const image = `kiln-e2e-${name}-${id}`;
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
    // Runs as the image's user (1000) on the run image, which has no shell.
    const user = await podman.run(
      `oci:${path.join(KILN_HOME, 'images')}:docker.io/library/${image}:latest`,
      [],
      {
        entrypoint: '/bin/sh',
      },
    );
    assert.notEqual(user.code, 0, 'the run image has no /bin/sh');
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
    const image = `kiln-e2e-node-procfile-${id}`;
    const run = runKiln([image, '--process', 'worker']);
    const until = Date.now() + 20_000;
    while (!run.output().includes('node-procfile worker started') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const res = await run.stop();
    assert.match(res.stdout + res.stderr, /node-procfile worker started/);
  });

  test('node-express (Express with a lock file)', async () => {
    await sample('node-express', 'Hello from kiln: node-express\n');
  });
});
