// `kiln manifest create|add|annotate|inspect|push|remove|rm` through the CLI, pack's commands and
// flags: a list made in the local store from single-platform images, edited, pushed to a real
// registry (Docker Distribution) as an OCI index or a Docker manifest list, and removed.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Image } from '../../src/oci/image.ts';
import { setConfig } from '../../src/oci/mutate.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { RemoteIndex, remoteManifest } from '../../src/registry/remote.ts';
import { ImageStore } from '../../src/store/store.ts';
import { runMain } from '../helpers/cli.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

let work: string;
let reg: RegistryHandle;
let amd: Image;
let arm: Image;
const kiln = (...args: string[]) => runMain(args, { HOME: work, KILN_HOME: path.join(work, 'home') });

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-manifest-'));
  reg = await startRegistry();
  const run = await runImage({ patch: '1' });
  amd = await appImage({
    run,
    runImageName: 'reg.example.com/run:1',
    runImageReference: 'reg.example.com/run@sha256:0',
  });
  arm = setConfig(amd, (c) => ({ ...c, architecture: 'arm64' }));
  const store = await ImageStore.open(ImageStore.defaultDir(path.join(work, 'home')));
  await store.write(amd, ['app:amd64']);
  await store.write(arm, [`${reg.host}/app:arm64`]);
});
after(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

const inspect = async (list: string) => {
  const r = await kiln('manifest', 'inspect', list);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as {
    mediaType: string;
    manifests: { digest: string; platform?: Record<string, string>; annotations?: Record<string, string> }[];
  };
};

test('create, annotate, rm, add, push (OCI and v2s2), remove', async () => {
  const list = `${reg.host}/app:multi`;
  const c = await kiln('manifest', 'create', list, 'app:amd64', `${reg.host}/app:arm64`);
  assert.equal(c.code, 0, c.err);
  let idx = await inspect(list);
  assert.equal(idx.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(
    idx.manifests.map((m) => m.platform),
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
    ],
  );
  assert.equal(idx.manifests[1]!.digest, await arm.digest());
  assert.match((await kiln('manifest', 'create', list, 'app:amd64')).err, /exists in the local store/);

  const a = await kiln(
    'manifest',
    'annotate',
    list,
    await arm.digest(),
    '--variant',
    'v8',
    '--annotations',
    'org.example/k=v',
  );
  assert.equal(a.code, 0, a.err);
  idx = await inspect(list);
  assert.deepEqual(idx.manifests[1]!.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(idx.manifests[1]!.annotations, { 'org.example/k': 'v' });

  assert.equal((await kiln('manifest', 'rm', list, 'app:amd64')).code, 0);
  assert.deepEqual(
    (await inspect(list)).manifests.map((m) => m.digest),
    [await arm.digest()],
  );
  assert.equal((await kiln('manifest', 'add', list, 'app:amd64')).code, 0);
  assert.deepEqual(
    (await inspect(list)).manifests.map((m) => m.digest),
    [await arm.digest(), await amd.digest()],
  );

  const p = await kiln('manifest', 'push', list);
  assert.equal(p.code, 0, p.err);
  const client = new RegistryClient({});
  const pushed = await remoteManifest(client, parseReference(list));
  assert.ok(pushed instanceof RemoteIndex);
  assert.equal(await pushed.digest(), p.out.trim());
  assert.equal((await pushed.indexManifest()).manifests[0]!.platform?.variant, 'v8');
  // Both images were pushed with the list, and read back per platform.
  assert.equal(await (await pushed.image((await arm.digest()) as never)).digest(), await arm.digest());

  const v2 = await kiln('manifest', 'push', list, '--format', 'v2s2', '--purge');
  assert.equal(v2.code, 0, v2.err);
  assert.equal(
    await (await remoteManifest(client, parseReference(list))).mediaType(),
    'application/vnd.docker.distribution.manifest.list.v2+json',
  );
  // --purge removed the local list: inspect now reads the registry's.
  assert.equal((await inspect(list)).mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');
  const gone = await kiln('manifest', 'remove', list);
  assert.notEqual(gone.code, 0);
  assert.match(gone.err, /no manifest list .* in the local store/);
});

test('create from an index takes its manifests; remove deletes the local list', async () => {
  const c = await kiln('manifest', 'create', 'both:1', `${reg.host}/app:multi`, '--format', 'v2s2');
  assert.equal(c.code, 0, c.err);
  const idx = await inspect('both:1');
  assert.equal(idx.manifests.length, 2);
  assert.equal((await kiln('manifest', 'remove', 'both:1')).code, 0);
  assert.notEqual((await kiln('manifest', 'add', 'both:1', 'app:amd64')).code, 0);
});
