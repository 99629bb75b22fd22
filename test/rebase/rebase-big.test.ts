// Rebase at the size of a real app: `kiln rebase --publish` of an image with ~500 MB of
// app layers (incompressible, stored uncompressed so the set-up does not spend a minute in gzip)
// uploads zero layer bytes, counted by a proxy in front of a real registry: only the new config.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Layer } from '../../src/oci/image.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { writeImage } from '../../src/registry/write.ts';
import { runMain } from '../helpers/cli.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';
import {
  type ProxyHandle,
  type RegistryHandle,
  startCountingProxy,
  startRegistry,
} from '../helpers/registry.ts';

const APP_MB = 500;
const LAYERS = 4;

let work: string;
let reg: RegistryHandle;
let proxy: ProxyHandle;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-rebase-big-'));
  reg = await startRegistry();
  proxy = await startCountingProxy(reg.host);
});
after(async () => {
  await proxy?.stop();
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

async function bigLayers(layout: Layout): Promise<Layer[]> {
  const per = Math.floor((APP_MB << 20) / LAYERS);
  const out: Layer[] = [];
  for (let l = 0; l < LAYERS; l++) {
    out.push(
      await writeLayer(
        [
          { path: 'workspace', type: 'dir', mode: 0o755, uid: 1000, gid: 1000 },
          {
            path: `workspace/blob-${l}.bin`,
            type: 'file',
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            size: per,
            open: () =>
              Readable.from(
                (function* () {
                  for (let left = per; left > 0; left -= 1 << 20) yield randomBytes(Math.min(left, 1 << 20));
                })(),
              ),
          },
        ],
        { store: layout.blobs, compression: 'none' },
      ),
    );
  }
  return out;
}

test(`rebase of an image with ~${APP_MB} MB of app layers uploads zero layer bytes`, {
  timeout: 300_000,
}, async () => {
  const client = new RegistryClient({});
  const runRef = `${proxy.host}/kiln/run:bookworm`;
  const appRef = `${proxy.host}/apps/big:latest`;
  const v1 = await runImage({ patch: '1' });
  await writeImage(client, parseReference(runRef), v1);
  const base = await appImage({
    run: v1,
    runImageName: runRef,
    runImageReference: `${proxy.host}/kiln/run@${await v1.digest()}`,
  });
  const extra = await bigLayers(await Layout.init(path.join(work, 'blobs')));
  const cfg = await base.configFile();
  const app = imageFrom({
    config: { ...cfg, history: undefined },
    layers: [...(await base.layers()), ...extra],
  });
  await writeImage(client, parseReference(appRef), app);
  const appBytes = (await app.manifest()).layers.reduce((n, l) => n + l.size, 0);
  assert.ok(appBytes > APP_MB << 20, `the app image holds ${appBytes} layer bytes`);
  await writeImage(client, parseReference(runRef), await runImage({ patch: '2', layers: 3 }));

  proxy.reset();
  const started = process.hrtime.bigint();
  const { code, err } = await runMain(['rebase', appRef, '--publish'], {
    HOME: work,
    KILN_HOME: path.join(work, 'kiln'),
    DOCKER_CONFIG: path.join(work, 'docker'),
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.equal(code, 0, err);
  const rebased = await remoteImage(client, parseReference(appRef));
  assert.equal(
    proxy.stats.uploadBytes,
    (await rebased.rawConfig()).length,
    'only the config blob is uploaded',
  );
  assert.deepEqual(
    (await rebased.manifest()).layers.slice(-LAYERS),
    (await app.manifest()).layers.slice(-LAYERS),
  );
  process.stderr.write(
    `# rebase of a ${APP_MB} MB-app image against the local registry: ${ms.toFixed(0)} ms\n`,
  );
});
