import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { readImage } from '../layout/layout.ts';
import { emptyImage } from '../oci/memory.ts';
import { addLabels } from '../oci/mutate.ts';
import { ImageStore, storeNameOf } from './store.ts';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await fs.rm(t, { recursive: true, force: true });
});

test('ImageStore stores images under canonical names that any spelling finds', async () => {
  const d = await fs.mkdtemp(path.join(tmpdir(), 'kiln-store-test-'));
  temps.push(d);
  const store = await ImageStore.open(path.join(d, 'images'));
  assert.equal(await store.find('my-app'), undefined);
  const img = addLabels(emptyImage(), { a: '1' });
  await store.write(img, ['my-app', 'localhost:5000/x/y:v1']);
  assert.equal(storeNameOf('my-app'), 'docker.io/library/my-app:latest');
  const found = await store.find('docker.io/library/my-app');
  assert.equal(await found?.digest(), await img.digest());
  assert.equal(await store.digestOf('index.docker.io/library/my-app:latest'), await img.digest());
  assert.deepEqual(
    (await store.list()).map((e) => e.name),
    ['docker.io/library/my-app:latest', 'localhost:5000/x/y:v1'],
  );
  // A plain OCI layout: readable by tag with the layout reader (as skopeo would).
  const viaLayout = await readImage(store.dir, 'localhost:5000/x/y:v1');
  assert.equal(await viaLayout.digest(), await img.digest());
  const img2 = addLabels(emptyImage(), { a: '2' });
  await store.write(img2, ['my-app']);
  assert.equal(await (await store.find('my-app'))?.digest(), await img2.digest());
  await store.remove('my-app');
  assert.equal(await store.find('my-app'), undefined);
});

test('ImageStore.maybeGc() drops blobs of replaced images, at most once per interval', async () => {
  const d = await fs.mkdtemp(path.join(tmpdir(), 'kiln-store-gc-'));
  temps.push(d);
  const store = await ImageStore.open(path.join(d, 'images'));
  const old = addLabels(emptyImage(), { v: 'old' });
  await store.write(old, ['app']);
  const oldConfig = (await old.manifest()).config.digest;
  await store.write(addLabels(emptyImage(), { v: 'new' }), ['app']);
  // Age every blob past the grace period.
  const blobs = path.join(store.dir, 'blobs', 'sha256');
  const past = new Date(Date.now() - 2 * 3_600_000);
  for (const f of await fs.readdir(blobs)) await fs.utimes(path.join(blobs, f), past, past);
  const removed = await store.maybeGc();
  assert.ok(removed?.includes(oldConfig), 'the replaced image config is gone');
  assert.ok(await store.find('app'), 'the current image is intact');
  assert.equal(await store.maybeGc(), undefined, 'not again within the interval');
});
