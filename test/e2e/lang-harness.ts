import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readTar } from '../../src/layers/tar-reader.ts';
import type { Podman } from '../helpers/podman.ts';
import { httpGet, storedImage } from './samples-harness.ts';

// Shared by the language buildpack tests (go, python): run an image kiln built with podman on the
// shell-free run image, and read what the image holds.

/** podmanServe runs the image with podman (host network, PORT set) until `check` is done, then stops it. */
export async function podmanServe(
  podman: Podman,
  store: string,
  name: string,
  port: number,
  check: () => Promise<void>,
): Promise<string> {
  const container = `kiln-e2e-${randomBytes(4).toString('hex')}`;
  const running = podman.run(`oci:${store}:docker.io/library/${name}:latest`, [], {
    network: 'host',
    env: { PORT: String(port) },
    flags: ['--name', container],
    timeoutMs: 60_000,
  });
  try {
    await check();
  } finally {
    const stopped = await podman.exec(['stop', '-t', '2', container]);
    if (stopped.code !== 0) await podman.exec(['kill', container]);
    await podman.exec(['rm', '-f', container]);
  }
  const res = await running;
  return res.stdout + res.stderr;
}

/** serveAndGet runs the image with podman and returns what GET / answers. */
export async function serveAndGet(
  podman: Podman,
  store: string,
  name: string,
  port: number,
): Promise<string> {
  let body = '';
  await podmanServe(podman, store, name, port, async () => {
    body = await httpGet(port, 60_000);
  });
  return body;
}

/** imageFiles lists every path of the image's layers (no leading "/") with small files' text. */
export async function imageFiles(name: string): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const layer of await (await storedImage(name)).layers()) {
    for await (const e of readTar(await layer.uncompressed())) {
      const p = e.header.path.replace(/^\.?\/+/, '').replace(/\/$/, '');
      let text: string | undefined;
      if (e.header.type === 'file' && e.header.size < 1024 * 1024) {
        const chunks: Buffer[] = [];
        for await (const c of e.body) chunks.push(Buffer.from(c));
        text = Buffer.concat(chunks).toString('utf8');
      } else for await (const _ of e.body);
      out.set(p, text);
    }
  }
  return out;
}

/** assertRunsAsRunUser checks the image runs as the stack's run user and has no shell. */
export async function assertRunUserNoShell(podman: Podman, store: string, name: string): Promise<void> {
  const cfg = await (await storedImage(name)).configFile();
  assert.equal(cfg.config?.User, '1001:1000');
  const sh = await podman.run(`oci:${store}:docker.io/library/${name}:latest`, ['-c', 'true'], {
    entrypoint: '/bin/sh',
  });
  assert.notEqual(sh.code, 0);
}
