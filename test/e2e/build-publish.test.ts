import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { readDockerArchive } from '../../src/archive/docker-archive.ts';
import { imageAccess } from '../../src/cli/commands/build.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { artifactImage } from '../../src/sbom/artifact.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../src/sbom/cyclonedx.ts';
import { sbomBytes } from '../../src/sbom/referrers.ts';
import { SPDX_MEDIA_TYPE } from '../../src/sbom/spdx.ts';
import { Transports } from '../../src/transport/transports.ts';
import { type Podman, startPodman } from '../helpers/podman.ts';
import { type ProxyHandle, type RegistryHandle, startProxy, startRegistry } from '../helpers/registry.ts';
import { type E2E, makeE2E, podmanRunRetrying } from './build-fixture.ts';

let w: E2E;
let reg: RegistryHandle;
let proxy: ProxyHandle;
let podman: Podman;
before(async () => {
  [w, reg, podman] = await Promise.all([makeE2E(), startRegistry(), startPodman()]);
  proxy = await startProxy(reg.host);
});
after(async () => {
  await proxy?.stop();
  await reg?.stop();
  await podman?.cleanup();
  await w?.cleanup();
});

function transports(): Transports {
  return new Transports({ client: new RegistryClient({}), storeDir: w.store.dir }, w.store);
}

test('--publish pushes to a registry; the rebuild reuses the remote previous image and uploads no layer bytes', async () => {
  const name = `${proxy.host}/e2e/published:v1`;
  const t = transports();
  const dest = t.parse(name);
  const tag = t.parse(`${proxy.host}/e2e/published:extra`);
  const app = await w.app('publish', 'published');
  const access = () => imageAccess(t.fanOut([dest, tag]), dest, t);
  const first = await w.build(app, name, { images: access() });
  assert.ok(proxy.stats.uploadBytes > 0);
  const remote = await remoteImage(new RegistryClient({}), parseReference(name));
  assert.equal(await remote.digest(), first.digest);
  const extra = await remoteImage(
    new RegistryClient({}),
    parseReference(`${proxy.host}/e2e/published:extra`),
  );
  assert.equal(await extra.digest(), first.digest, '--tag points at the same image');

  proxy.reset();
  const second = await w.build(app, name, { images: access() });
  assert.equal(second.digest, first.digest);
  assert.equal(second.stats.compressed, 0);
  assert.equal(proxy.stats.uploadBytes, 0, 'no blob uploaded for a no-op rebuild');

  await fs.writeFile(path.join(app, 'message.txt'), 'published again\n');
  proxy.reset();
  const third = await w.build(app, name, { images: access() });
  assert.notEqual(third.digest, first.digest);
  const uploads = proxy.stats.requests.filter(
    (r) => r.method === 'POST' && r.path.includes('/blobs/uploads'),
  );
  // Only the app layer and the config are new.
  assert.ok(uploads.length <= 2, `uploads: ${uploads.map((u) => u.path).join(', ')}`);
  const run = await podmanRunRetrying(podman, `${proxy.host}/e2e/published:v1`, [], {
    flags: ['--tls-verify=false'],
  });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'GREETING=hi uid=1000 message=published again\n');
});

test('oci: and docker-archive: destinations', async () => {
  const app = await w.app('dests', 'to a layout');
  const layout = path.join(w.root, 'out-layout');
  const b = await w.build(app, 'e2e-dest', { dest: `oci:${layout}:app` });
  const r = await podmanRunRetrying(podman, `oci:${layout}:app`, [], {});
  assert.equal(r.stdout, 'GREETING=hi uid=1000 message=to a layout\n');
  // The layout's image is the previous image of the next build into it.
  const again = await w.build(app, 'e2e-dest', { dest: `oci:${layout}:app` });
  assert.equal(again.digest, b.digest);
  assert.equal(again.stats.compressed, 0);
  const archive = path.join(w.root, 'out.tar');
  const c = await w.build(app, 'e2e-dest-archive', { dest: `docker-archive:${archive}:e2e/dest:latest` });
  assert.equal(c.digest, b.digest, 'same image whatever the destination');
  const loaded = await readDockerArchive(archive);
  await w.build(app, 'e2e-dest');
  const stored = (await w.store.find('e2e-dest'))!;
  assert.deepEqual((await loaded.configFile()).rootfs.diff_ids, (await stored.configFile()).rootfs.diff_ids);
  const l = await podman.load(archive);
  assert.equal(l.code, 0, l.stderr);
  const r2 = await podmanRunRetrying(podman, 'e2e/dest:latest', []);
  assert.equal(r2.stdout, 'GREETING=hi uid=1000 message=to a layout\n');
});

test("a registry run image: the app image's SBOM carries the run image's packages, as with a local one", async () => {
  // A run image only the registry has (the fixture's, one label more: no digest the local store
  // knows), with its SBOM referrers pushed as `kiln stack create --publish` does.
  const t = transports();
  const base = await t.local('e2e/run').read();
  const cfg = await base.configFile();
  const runImage = imageFrom({
    config: {
      ...cfg,
      config: { ...cfg.config, Labels: { ...cfg.config?.Labels, 'io.kiln.e2e.where': 'registry' } },
    },
    layers: await base.layers(),
  });
  const remote = t.parse(`${reg.host}/e2e/registry-run:latest`);
  const pushed = await remote.write(runImage);
  assert.equal(await w.store.layout.blobs.has(pushed.digest), false, 'the local store does not have it');
  const subject = {
    mediaType: await runImage.mediaType(),
    digest: pushed.digest,
    size: (await runImage.rawManifest()).length,
  };
  const docs = [
    [
      CYCLONEDX_MEDIA_TYPE,
      {
        bomFormat: 'CycloneDX',
        specVersion: '1.6',
        components: [{ type: 'library', name: 'registry-base-files' }],
      },
      'sbom.cdx.json',
    ],
    [
      SPDX_MEDIA_TYPE,
      { spdxVersion: 'SPDX-2.3', name: 'registry-run', packages: [{ name: 'registry-base-files' }] },
      'sbom.spdx.json',
    ],
  ] as const;
  for (const [mediaType, doc, title] of docs)
    await remote.referrers.attach(
      artifactImage({
        artifactType: mediaType,
        subject,
        files: [{ mediaType, data: sbomBytes(doc), title }],
      }),
    );

  const app = await w.app('registry-run', 'on a registry run image');
  const fromLocal = await w.build(app, 'e2e-run-local');
  await w.build(app, 'e2e-run-registry', { runImage: `${reg.host}/e2e/registry-run:latest` });
  const sbomLayer = async (name: string) => {
    const img = (await w.store.find(name))!;
    const c = await img.configFile();
    const md = JSON.parse(c.config!.Labels!['io.buildpacks.lifecycle.metadata']!);
    const layer = (await img.layers())[c.rootfs.diff_ids.indexOf(md.sbom.sha)]!;
    return {
      tar: Buffer.concat(await (await layer.uncompressed()).toArray()),
      runRef: md.runImage.reference as string,
    };
  };
  const [a, b] = [await sbomLayer('e2e-run-local'), await sbomLayer('e2e-run-registry')];
  assert.equal(b.runRef, `${reg.host}/e2e/registry-run@${pushed.digest}`, 'built on the registry run image');
  for (const f of ['sbom.cdx.json', 'sbom.spdx.json']) {
    const p = Buffer.from(`layers/sbom/launch/buildpacksio_lifecycle/run-image/${f}`);
    assert.ok(a.tar.includes(p) && b.tar.includes(p), f);
  }
  assert.ok(a.tar.includes(Buffer.from('e2e-base-files')), "the local run image's packages");
  assert.ok(b.tar.includes(Buffer.from('registry-base-files')), "the registry run image's packages");
  assert.ok(!b.tar.includes(Buffer.from('e2e-base-files')));
  assert.ok(fromLocal.digest);
});
