// Rebase on a REAL image: a sample built by `kiln build` with the default builder on kiln's own
// stack, then a test-made security patch of that stack's run image (the real run image plus a
// layer that upgrades tzdata's dpkg status entry and adds a static `kcat`), with its own SBOM
// attached as `kiln stack create` does. `kiln rebase` (no --force: same repository) must keep
// every app layer's digest, put exactly the new run image's layers underneath, and the image must
// still serve; `kiln sbom download` must then validate and list exactly the OS packages the
// rebased image holds (the new tzdata, not the one of the build). The same flow against a
// registry, behind a counting proxy, uploads only the new config.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import type { Image } from '../../src/oci/image.ts';
import { appendLayers } from '../../src/oci/mutate.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference, repositoryString } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { CYCLONEDX_MEDIA_TYPE } from '../../src/sbom/cyclonedx.ts';
import type { SbomComponent } from '../../src/sbom/model.ts';
import { attachSbom, KILN_TOOL, sbomDocuments, sbomOfImage } from '../../src/stack/sbom.ts';
import { ImageStore } from '../../src/store/store.ts';
import { tarLayer } from '../helpers/cnb-images.ts';
import { buildStaticCat, type Podman, startPodman } from '../helpers/podman.ts';
import {
  type ProxyHandle,
  type RegistryHandle,
  startCountingProxy,
  startRegistry,
} from '../helpers/registry.ts';
import { cyclonedxValidator, validateSpdx } from '../helpers/sbom-schemas.ts';
import { podmanRunRetrying } from './build-fixture.ts';
import {
  copySample,
  freePort,
  httpGet,
  KILN_HOME,
  kiln,
  kilnOk,
  prepareHome,
  runKiln,
} from './samples-harness.ts';

const ANSWER = 'Hello from kiln: static-binary\n';
const tag = randomBytes(4).toString('hex');
const APP = `kiln-e2e-rebase-${tag}`;

let work: string;
let store: ImageStore;
let sample: { dir: string; cleanup: () => Promise<void> };
let built: Image;
/** The run image the app was built on (kiln's stack), its name as recorded, and the patched one. */
let run: Image;
let runRepo: string;
let patched: Image;
let patchedTag: string;
const PATCHED_TZDATA = '2099a-0+deb12u1';

/** installed lists `name@version` of the dpkg status.d entries an image holds (later layers win). */
async function installed(image: Image): Promise<string[]> {
  const pkgs = new Map<string, string>();
  for (const layer of await image.layers()) {
    for await (const e of readTar(await layer.uncompressed())) {
      const p = e.header.path.replace(/^\.?\//, '');
      const m = /^var\/lib\/dpkg\/status\.d\/([^/]+)$/.exec(p);
      const chunks: Buffer[] = [];
      for await (const c of e.body) if (m && e.header.type === 'file') chunks.push(Buffer.from(c));
      if (!m || e.header.type !== 'file' || m[1]!.includes('.')) continue;
      const text = Buffer.concat(chunks).toString('utf8');
      const version = /^Version: (.+)$/m.exec(text)?.[1];
      pkgs.set(m[1]!, `${m[1]}@${version}`);
    }
  }
  return [...pkgs.values()].sort();
}

/** debs lists `name@version` of the Debian packages of a CycloneDX document. */
function debs(cdx: { components?: { name: string; version: string; purl?: string }[] }): string[] {
  return (cdx.components ?? [])
    .filter((c) => c.purl?.startsWith('pkg:deb/'))
    .map((c) => `${c.name}@${c.version}`)
    .sort();
}

/** readSboms reads what `kiln sbom download` wrote to `out`: the image's CycloneDX and SPDX, and the launcher's CycloneDX. */
async function readSboms(out: string) {
  const read = async (file: string) => JSON.parse(await readFile(path.join(out, file), 'utf8'));
  return {
    cdx: await read('sbom.cdx.json'),
    spdx: await read('sbom.spdx.json'),
    launcher: await read('layers/sbom/launch/buildpacksio_lifecycle/launcher/sbom.cdx.json'),
  };
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-rebase-'));
  await prepareHome();
  store = await ImageStore.open(path.join(KILN_HOME, 'images'));
  sample = await copySample('static-binary');
  execFileSync('sh', [path.join(sample.dir, 'build.sh')]);
  await kilnOk(['build', APP, '--path', sample.dir, '--cache-dir', path.join(work, 'cache')]);
  built = (await store.find(APP))!;
  const md = parseLifecycleMetadata(
    (await built.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
  );
  runRepo = md.runImage.image!;
  run = (await store.find(runRepo))!;
  assert.ok(run, `the run image ${runRepo} is in the store`);
  // The digest form pack and the reference lifecycle record (repository, no tag); rebase records the same.
  assert.equal(
    md.runImage.reference,
    `${repositoryString(parseReference(runRepo))}@${await run.digest()}`,
    'built on the stored run image',
  );

  // The patch: tzdata "upgraded" (its status entry rewritten) and a static cat to look inside.
  const tz = (await readStatus(run, 'tzdata')).replace(/^Version: .+$/m, `Version: ${PATCHED_TZDATA}`);
  await buildStaticCat(path.join(work, 'kcat'));
  patched = appendLayers(
    run,
    await tarLayer({
      'etc/kiln-patch': 'patch 2\n',
      'usr/local/bin/kcat': await readFile(path.join(work, 'kcat')),
      'var/lib/dpkg/status.d/tzdata': tz,
    }),
  );
  patchedTag = `${runRepo}:rebase-${tag}`;
  const desc = await store.write(patched, [patchedTag]);
  // Its SBOM, as `kiln stack create` attaches one: the base's packages with the new tzdata.
  const base = (await sbomOfImage(store.layout, await run.digest(), CYCLONEDX_MEDIA_TYPE)) as {
    components: { name: string; version: string; purl: string }[];
  };
  assert.ok(base, 'the stack run image has its SBOM attached');
  const components: SbomComponent[] = base.components.map((c) =>
    c.name === 'tzdata'
      ? {
          name: c.name,
          version: PATCHED_TZDATA,
          purl: c.purl.replace(c.version, PATCHED_TZDATA),
          licenses: [],
        }
      : { name: c.name, version: c.version, purl: c.purl, licenses: [] },
  );
  await attachSbom(
    store.layout,
    desc,
    sbomDocuments(components, {
      subject: { name: patchedTag, digest: desc.digest },
      epoch: 1,
      tool: KILN_TOOL,
    }),
  );
});

after(async () => {
  for (const n of [APP, patchedTag]) if (n) await store?.remove(n).catch(() => {});
  await sample?.cleanup();
  await rm(work, { recursive: true, force: true });
});

async function readStatus(image: Image, pkg: string): Promise<string> {
  let found: string | undefined;
  for (const layer of await image.layers()) {
    for await (const e of readTar(await layer.uncompressed())) {
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(Buffer.from(c));
      if (e.header.path.replace(/^\.?\//, '') === `var/lib/dpkg/status.d/${pkg}`)
        found = Buffer.concat(chunks).toString('utf8');
    }
  }
  assert.ok(found, `${pkg} has a status entry`);
  return found;
}

describe('kiln rebase of a kiln-built image onto a patched stack run image', () => {
  let rebased: Image;

  test('the fresh build: sbom download validates and lists the packages the image holds', async () => {
    const out = path.join(work, 'sbom-built');
    await kilnOk(['sbom', 'download', APP, '--output-dir', out]);
    const { cdx, spdx, launcher } = await readSboms(out);
    assert.deepEqual(cyclonedxValidator()(cdx), []);
    assert.deepEqual(validateSpdx(spdx), []);
    const expected = [...new Set([...(await installed(built)), ...debs(launcher)])].sort();
    assert.deepEqual(debs(cdx), expected);
  });

  test('no --force for a newer image of the recorded repository; app layers keep their digests', async () => {
    const r = await kilnOk(['rebase', APP, '--run-image', patchedTag]);
    rebased = (await store.find(APP))!;
    assert.equal(r.stdout.trim(), await rebased.digest());
    const oldM = await built.manifest();
    const oldCfg = await built.configFile();
    const runLayers = (await run.manifest()).layers.length;
    const m = await rebased.manifest();
    const cfg = await rebased.configFile();
    // Exactly the swap: the patched run image's layers, then the app's descriptors untouched.
    assert.deepEqual(m.layers, [...(await patched.manifest()).layers, ...oldM.layers.slice(runLayers)]);
    assert.deepEqual(cfg.rootfs.diff_ids, [
      ...(await patched.configFile()).rootfs.diff_ids,
      ...oldCfg.rootfs.diff_ids.slice(runLayers),
    ]);
    const md = parseLifecycleMetadata(cfg.config!.Labels!['io.buildpacks.lifecycle.metadata']!);
    assert.equal(md.runImage.topLayer, (await patched.configFile()).rootfs.diff_ids.at(-1));
    assert.equal(
      md.runImage.reference,
      `${repositoryString(parseReference(patchedTag))}@${await patched.digest()}`,
    );
    assert.equal(md.runImage.image, runRepo, 'a routine patch keeps the recorded run image name');
    // Nothing but the base and the lifecycle label changed in the config.
    const { Labels: oldLabels, ...oldRest } = oldCfg.config!;
    const { Labels: newLabels, ...newRest } = cfg.config!;
    assert.deepEqual(newRest, oldRest);
    const { 'io.buildpacks.lifecycle.metadata': _a, ...ol } = oldLabels!;
    const { 'io.buildpacks.lifecycle.metadata': _b, ...nl } = newLabels!;
    assert.deepEqual(nl, ol);
  });

  test('the rebased image serves with kiln run and runs with podman on the new base', async () => {
    assert.ok(rebased, 'rebased');
    const port = await freePort();
    const served = runKiln([APP, '-p', String(port)]);
    try {
      assert.equal(await httpGet(port), ANSWER);
    } finally {
      await served.stop();
    }
    const podman: Podman = await startPodman();
    try {
      const storeLink = path.join(podman.dir, 'store');
      await symlink(path.join(KILN_HOME, 'images'), storeLink);
      const r = await podmanRunRetrying(
        podman,
        `oci:${storeLink}:docker.io/library/${APP}:latest`,
        ['/etc/kiln-patch', '/workspace/Procfile'],
        { entrypoint: '/usr/local/bin/kcat' },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^patch 2\nweb: /);
    } finally {
      await podman.cleanup();
    }
  });

  test('sbom download lists the new run image packages, not the ones of the build', async () => {
    assert.ok(rebased, 'rebased');
    const out = path.join(work, 'sbom-rebased');
    const r = await kilnOk(['sbom', 'download', APP, '--output-dir', out]);
    assert.doesNotMatch(r.stderr, /not found/);
    const { cdx, spdx, launcher } = await readSboms(out);
    assert.deepEqual(cyclonedxValidator()(cdx), []);
    assert.deepEqual(validateSpdx(spdx), []);
    const holds = await installed(rebased);
    assert.ok(holds.includes(`tzdata@${PATCHED_TZDATA}`));
    assert.deepEqual(debs(cdx), [...new Set([...holds, ...debs(launcher)])].sort());
  });

  test('a run image of another repository is refused (exit 72) and nothing is written', async () => {
    const other = `kiln-e2e-other-run-${tag}`;
    await store.write(patched, [other]);
    try {
      const before = await (await store.find(APP))!.digest();
      const r = await kiln(['rebase', APP, '--run-image', other]);
      assert.equal(r.code, 72, r.stderr);
      assert.match(r.stderr, /is not the one the image was built on .*use --force/);
      assert.equal(
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => /ERROR|error/.test(l)).length,
        1,
      );
      assert.equal(await (await store.find(APP))!.digest(), before);
    } finally {
      await store.remove(other);
    }
  });
});

describe('kiln rebase of a kiln-built image in a registry', () => {
  let reg: RegistryHandle;
  let proxy: ProxyHandle;
  before(async () => {
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
  });
  after(async () => {
    await proxy?.stop();
    await reg?.stop();
  });

  test('built with --publish on a registry run image, rebased onto its patch: only the config is uploaded', async () => {
    const runRef = `${proxy.host}/kiln/run:bookworm`;
    const appRef = `${proxy.host}/apps/static-${tag}:latest`;
    await kilnOk(['image', 'copy', `local:${runRepo}`, runRef]);
    await kilnOk([
      'build',
      appRef,
      '--path',
      sample.dir,
      '--publish',
      '--run-image',
      runRef,
      '--cache-dir',
      path.join(work, 'cache-published'),
    ]);
    const client = new RegistryClient({});
    const app = await remoteImage(client, parseReference(appRef));
    await kilnOk(['image', 'copy', `local:${patchedTag}`, runRef]);
    proxy.reset();
    const r = await kilnOk(['rebase', appRef, '--publish']);
    const out = await remoteImage(client, parseReference(appRef));
    assert.equal(r.stdout.trim(), await out.digest());
    assert.equal(proxy.stats.uploadBytes, (await out.rawConfig()).length, 'only the config blob is uploaded');
    const runLayers = (await run.manifest()).layers.length;
    assert.deepEqual((await out.manifest()).layers, [
      ...(await patched.manifest()).layers,
      ...(await app.manifest()).layers.slice(runLayers),
    ]);
  });
});
