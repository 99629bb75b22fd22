// kiln rebase end to end: against a real registry (behind a counting proxy: zero layer bytes
// uploaded, the run image lives in another repository so its layers are mounted) and on OCI
// layouts (a test-made newer run image).

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Image } from '../../src/oci/image.ts';
import { validateImage } from '../../src/oci/validate.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { writeImage } from '../../src/registry/write.ts';
import { ImageStore } from '../../src/store/store.ts';
import { runMain } from '../helpers/cli.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';
import {
  type ProxyHandle,
  type RegistryHandle,
  startCountingProxy,
  startRegistry,
} from '../helpers/registry.ts';

function kiln(env: Record<string, string>, ...argv: string[]) {
  return runMain(argv, env);
}

let work: string;
let env: Record<string, string>;
before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-rebase-'));
  env = { HOME: work, KILN_HOME: path.join(work, 'kiln'), DOCKER_CONFIG: path.join(work, 'docker') };
});
after(() => rm(work, { recursive: true, force: true }));

describe('kiln rebase against a registry', () => {
  let reg: RegistryHandle;
  let proxy: ProxyHandle;
  const client = () => new RegistryClient({});
  before(async () => {
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
  });

  test('uploads no layer bytes, keeps app layers, takes the newest run image of the recorded repository', async () => {
    const runRef = `${proxy.host}/kiln/run:bookworm`;
    const appRef = `${proxy.host}/apps/express:latest`;
    const v1 = await runImage({ patch: '1' });
    await writeImage(client(), parseReference(runRef), v1);
    const app = await appImage({
      run: v1,
      runImageName: runRef,
      runImageReference: `${proxy.host}/kiln/run@${await v1.digest()}`,
      appPadding: 24 << 20,
    });
    await writeImage(client(), parseReference(appRef), app);
    // A security patch: a newer run image under the same tag.
    const v2 = await runImage({ patch: '2', layers: 3 });
    await writeImage(client(), parseReference(runRef), v2);

    proxy.reset();
    const started = process.hrtime.bigint();
    const r = await kiln(env, 'rebase', appRef, '--publish', '--report-output-dir', work);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.equal(r.code, 0, r.err);
    const rebased = await remoteImage(client(), parseReference(appRef));
    await validateImage(rebased);
    const rawConfig = await rebased.rawConfig();
    // The only blob uploaded is the new config: zero layer bytes.
    assert.equal(proxy.stats.uploadBytes, rawConfig.length, 'only the config blob is uploaded');
    const layers = (await rebased.manifest()).layers;
    assert.deepEqual(layers, [...(await v2.manifest()).layers, ...(await app.manifest()).layers.slice(2)]);
    const md = parseLifecycleMetadata(
      (await rebased.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
    );
    assert.equal(md.runImage.reference, `${proxy.host}/kiln/run@${await v2.digest()}`);
    assert.equal(md.runImage.topLayer, (await v2.configFile()).rootfs.diff_ids.at(-1));
    assert.equal(r.out.trim(), await rebased.digest());
    const report = await readFile(path.join(work, 'report.toml'), 'utf8');
    assert.match(report, new RegExp(`digest = "${await rebased.digest()}"`));
    assert.match(report, /manifest-size = \d+/);
    process.stderr.write(`# rebase of a 24 MiB-app image against the local registry: ${ms.toFixed(0)} ms\n`);
  });

  test('refuses a run image of another architecture without --force', async () => {
    const runRef = `${proxy.host}/kiln/run-arm:1`;
    const appRef = `${proxy.host}/apps/other:latest`;
    const v1 = await runImage({ patch: '1' });
    const app = await appImage({
      run: v1,
      runImageName: `${proxy.host}/kiln/run:bookworm`,
      runImageReference: 'x',
    });
    await writeImage(client(), parseReference(appRef), app);
    await writeImage(client(), parseReference(runRef), await runImage({ patch: '9', arch: 'arm64' }));
    const before = await (await remoteImage(client(), parseReference(appRef))).digest();
    const r = await kiln(env, 'rebase', appRef, '--publish', '--run-image', runRef);
    assert.equal(r.code, 72);
    assert.match(r.err, /the run image is linux\/arm64, the image is linux\/amd64/);
    assert.equal(
      await (await remoteImage(client(), parseReference(appRef))).digest(),
      before,
      'nothing written',
    );
  });
});

describe('kiln rebase on OCI layouts', () => {
  test('a test-made newer run image in the same layout is a routine patch', async () => {
    const dir = path.join(work, 'layout');
    const layout = await Layout.init(dir);
    const v1 = await runImage({ patch: '1' });
    const app = await appImage({
      run: v1,
      runImageName: `oci:${dir}:run`,
      runImageReference: `oci:${dir}@${await v1.digest()}`,
    });
    await layout.writeImage(app, 'app');
    const v2 = await runImage({ patch: '2' });
    await layout.writeImage(v2, 'run-2');
    const r = await kiln(
      env,
      'rebase',
      `oci:${dir}:app`,
      '--run-image',
      `oci:${dir}:run-2`,
      '--tag',
      `oci:${dir}:app-rebased`,
    );
    assert.equal(r.code, 0, r.err);
    const out: Image = await (await Layout.open(dir)).image('app');
    const tagged: Image = await (await Layout.open(dir)).image('app-rebased');
    assert.equal(await out.digest(), await tagged.digest());
    assert.equal(await out.digest(), r.out.trim());
    assert.deepEqual((await out.manifest()).layers.slice(0, 2), (await v2.manifest()).layers);
    assert.deepEqual((await out.manifest()).layers.slice(2), (await app.manifest()).layers.slice(2));
  });
});

describe('kiln rebase in the local store', () => {
  test('bare names resolve to the store; the result replaces the stored image', async () => {
    const store = await ImageStore.open(ImageStore.defaultDir(env.KILN_HOME!));
    const v1 = await runImage({ patch: '1' });
    const v2 = await runImage({ patch: '2' });
    await store.write(v1, ['kiln/run:1']);
    await store.write(v2, ['kiln/run:2']);
    const app = await appImage({
      run: v1,
      runImageName: 'kiln/run:1',
      runImageReference: `kiln/run@${await v1.digest()}`,
    });
    await store.write(app, ['my-app']);
    const r = await kiln(env, 'rebase', 'my-app', '--run-image', 'kiln/run:2');
    assert.equal(r.code, 0, r.err);
    const out = (await store.find('my-app'))!;
    assert.equal(await out.digest(), r.out.trim());
    assert.deepEqual((await out.manifest()).layers.slice(0, 2), (await v2.manifest()).layers);
    const md = parseLifecycleMetadata(
      (await out.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
    );
    assert.equal(md.runImage.image, 'kiln/run:1', 'same repository: the recorded name stays');
  });
});
