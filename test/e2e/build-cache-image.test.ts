import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ImageCache } from '../../src/lifecycle/cache-image.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { type E2E, makeE2E } from './build-fixture.ts';

let w: E2E;
let reg: RegistryHandle;
before(async () => {
  [w, reg] = await Promise.all([makeE2E(), startRegistry()]);
});
after(async () => {
  await reg?.stop();
  await w?.cleanup();
});

test('--cache-image keeps the layer cache in a registry: a rebuild restores from it and compresses nothing', async () => {
  const client = new RegistryClient({});
  const ref = parseReference(`${reg.host}/e2e/cache:build`);
  const cache = () => new ImageCache({ ref, client, blobs: w.store.blobs });
  const app = await w.app('cache-image', 'cached in a registry');
  const first = await w.build(app, 'e2e-cache-image', { layerCache: cache() });
  assert.match(first.log.lines.join('\n'), /Adding cache layer 'e2e\/deps:downloads'/);
  const snap = await cache().snapshot();
  assert.equal(snap.metadata.buildpacks?.find((b) => b.key === 'e2e/deps')?.layers?.downloads?.cache, true);
  await snap.close();

  const second = await w.build(app, 'e2e-cache-image', { layerCache: cache() });
  const text = second.log.lines.join('\n');
  assert.match(text, /runtime: reusing cached layer/);
  assert.match(text, /deps: download cache hit/);
  assert.equal(second.digest, first.digest);
  assert.equal(second.stats.compressed, 0);

  // A changed dependency replaces its cache layer; the unchanged one and the SBOM layer are kept
  // (not uploaded again).
  await fs.writeFile(path.join(app, 'deps.txt'), 'left-pad@2');
  const third = await w.build(app, 'e2e-cache-image', { layerCache: cache() });
  assert.match(
    third.log.lines.join('\n'),
    /Cache .*e2e\/cache:build: 1 layer\(s\) added, 2 reused, 1 pruned/,
  );
});
