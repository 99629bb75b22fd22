// Every location picks the requested platform: an index in a layout, the store and a real registry
// (Docker Distribution) resolves to that platform's image; a single image of another platform is
// refused in one line naming what is missing; a previous image of another platform is none. The
// CLI's `kiln inspect` of an index shows every platform, and `kiln build --platform` refuses a
// builder that lacks it before anything runs.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runMain } from '../../test/helpers/cli.ts';
import { appImage, runImage } from '../../test/helpers/cnb-images.ts';
import { type RegistryHandle, startRegistry } from '../../test/helpers/registry.ts';
import { Layout } from '../layout/layout.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { indexFrom } from '../oci/index.ts';
import { setConfig } from '../oci/mutate.ts';
import { MissingPlatformError } from '../oci/platform.ts';
import type { Platform } from '../oci/schema.ts';
import { RegistryClient } from '../registry/client.ts';
import { ImageStore } from '../store/store.ts';
import { isIndex } from './image-target.ts';
import { Transports } from './transports.ts';

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };

let root: string;
let reg: RegistryHandle;
let amd: Image;
let arm: Image;
let index: ImageIndex;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'kiln-platform-select-'));
  reg = await startRegistry();
  const run = await runImage({ patch: '1' });
  amd = await appImage({
    run,
    runImageName: 'reg.example.com/run:1',
    runImageReference: 'reg.example.com/run@sha256:0',
  });
  arm = setConfig(amd, (c) => ({ ...c, architecture: 'arm64' }));
  index = indexFrom([{ image: amd }, { image: arm }]);
  const layout = await Layout.init(path.join(root, 'layout'));
  await layout.writeIndex(index, 'multi');
  await layout.writeImage(amd, 'amd-only');
  const store = await ImageStore.open(path.join(root, 'store'));
  await store.layout.writeIndex(index, 'docker.io/library/multi:latest');
  await store.write(amd, ['amd-only']);
});
after(async () => {
  await reg?.stop();
  await rm(root, { recursive: true, force: true });
});

const transports = (platform?: Platform) =>
  new Transports({
    client: new RegistryClient({}),
    storeDir: path.join(root, 'store'),
    ...(platform ? { platform } : {}),
  });

test('an index in a layout, the store and a registry resolves to the requested platform', async () => {
  await transports().parse(`${reg.host}/multi:1`).write(index);
  for (const where of [`oci:${root}/layout:multi`, 'local:multi', `${reg.host}/multi:1`]) {
    for (const [p, want] of [
      [ARM64, arm],
      [AMD64, amd],
    ] as const) {
      const t = transports(p).parse(where);
      assert.equal(await (await t.read()).digest(), await want.digest(), `${where} ${p.architecture}`);
      assert.equal(
        await (await t.find())?.digest(),
        await want.digest(),
        `${where} previous ${p.architecture}`,
      );
    }
    const all = await transports().parse(where).readAny();
    assert.ok(isIndex(all), `${where} reads as an index`);
    assert.equal((await all.indexManifest()).manifests.length, 2);
    const none = transports({ os: 'linux', architecture: 'riscv64' }).parse(where);
    await assert.rejects(none.read(), (e: Error) => {
      assert.ok(e instanceof MissingPlatformError, e.message);
      assert.match(e.message, /has no linux\/riscv64 image \(it has linux\/amd64, linux\/arm64\)$/);
      return true;
    });
    assert.equal(await none.find(), undefined, `${where}: no previous image for riscv64`);
  }
});

test('a single image of another platform is refused in one line; as a previous image it is none', async () => {
  await transports().parse(`${reg.host}/amd-only:1`).write(amd);
  for (const where of [`oci:${root}/layout:amd-only`, 'local:amd-only', `${reg.host}/amd-only:1`]) {
    const t = transports(ARM64).parse(where);
    await assert.rejects(t.read(), (e: Error) => {
      assert.ok(e instanceof MissingPlatformError);
      assert.equal(e.message, `${t.name} has no linux/arm64 image (it has linux/amd64)`);
      return true;
    });
    assert.equal(await t.find(), undefined, where);
    // Without a platform asked for, a single image is taken as it is.
    assert.equal(await (await transports().parse(where).read()).digest(), await amd.digest());
  }
});

test('kiln inspect of an index shows every platform; --platform shows one', async () => {
  const env = { HOME: root, KILN_HOME: path.join(root, 'home') };
  const human = await runMain(['inspect', `oci:${root}/layout:multi`], env);
  assert.equal(human.code, 0, human.err);
  assert.match(
    human.out,
    /^Index: oci:.*:multi\nDigest: sha256:[0-9a-f]{64}\nPlatforms: linux\/amd64, linux\/arm64\n/,
  );
  assert.match(human.out, /=== linux\/amd64 ===\nImage: [^\n]*\nDigest: [^\n]*\nPlatform: linux\/amd64/);
  assert.match(human.out, /=== linux\/arm64 ===\nImage: [^\n]*\nDigest: [^\n]*\nPlatform: linux\/arm64/);
  const json = JSON.parse((await runMain(['inspect', `oci:${root}/layout:multi`, '-o', 'json'], env)).out);
  assert.deepEqual(json.index.platforms, ['linux/amd64', 'linux/arm64']);
  assert.deepEqual(
    json.images.map((r: { image: { digest: string } }) => r.image.digest),
    [await amd.digest(), await arm.digest()],
  );
  const one = await runMain(
    ['inspect', `oci:${root}/layout:multi`, '--platform', 'linux/arm64', '-o', 'json'],
    env,
  );
  assert.equal(JSON.parse(one.out).image.platform, 'linux/arm64');
});

test('kiln build --platform refuses a builder without that platform in one line, before building', async () => {
  const env = { HOME: root, KILN_HOME: path.join(root, 'home'), CI: 'true' };
  const app = path.join(root, 'app');
  await mkdir(app, { recursive: true });
  await writeFile(path.join(app, 'Procfile'), 'web: ./server\n');
  const r = await runMain(
    [
      'build',
      `oci:${root}/out`,
      '--path',
      app,
      '--platform',
      'linux/arm64',
      '--builder',
      `oci:${root}/layout:amd-only`,
    ],
    env,
  );
  assert.notEqual(r.code, 0);
  assert.match(r.err, /oci:.*:amd-only has no linux\/arm64 image \(it has linux\/amd64\)/);
  assert.equal(
    r.err
      .trim()
      .split('\n')
      .filter((l) => /error/i.test(l)).length,
    1,
    r.err,
  );
  const bad = await runMain(['build', `oci:${root}/out`, '--path', app, '--platform', 'linux'], env);
  assert.equal(bad.code, 3, bad.err);
  assert.match(bad.err, /invalid platform "linux"/);
});
