import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { appImage, runImage } from '../../test/helpers/cnb-images.ts';
import { BUILD_USER_LABEL } from '../cnb/lifecycle-metadata.ts';
import type { Image } from '../oci/image.ts';
import { setConfig } from '../oci/mutate.ts';
import { formatReport, OUTPUT_FORMATS } from './format.ts';
import { inspectImage } from './inspect.ts';

// Golden files: run with KILN_UPDATE_GOLDEN=1 to rewrite them after an intended change.
const GOLDEN = path.join(import.meta.dirname, 'testdata');
const update = process.env.KILN_UPDATE_GOLDEN === '1';

async function golden(name: string, actual: string): Promise<void> {
  const file = path.join(GOLDEN, name);
  if (update) {
    await mkdir(GOLDEN, { recursive: true });
    await writeFile(file, actual);
  }
  assert.equal(
    actual,
    await readFile(file, 'utf8'),
    `golden ${name} differs (KILN_UPDATE_GOLDEN=1 to rewrite)`,
  );
}

async function sample() {
  const run = await runImage({ patch: '1', rebasable: true });
  const app = await appImage({
    run,
    runImageName: 'registry.example.com/kiln/run:bookworm',
    runImageReference: `registry.example.com/kiln/run@${await run.digest()}`,
    mirrors: ['mirror.example.com/kiln/run:bookworm'],
  });
  return { run, app };
}

async function labelsOf(image: Image): Promise<Record<string, string>> {
  return (await image.configFile()).config?.Labels ?? {};
}

describe('inspectImage()', () => {
  test('reads base, run images, buildpacks, processes, rebasable, labels and the SBOM summary', async () => {
    const { run, app } = await sample();
    const r = await inspectImage(app, { reference: 'my-app' });
    assert.equal(r.base.topLayer, (await run.configFile()).rootfs.diff_ids.at(-1));
    assert.equal(r.base.distro, 'debian 12');
    assert.equal(r.base.id, 'io.kiln.stacks.bookworm');
    assert.deepEqual(r.runImages, [
      { image: 'registry.example.com/kiln/run:bookworm', mirror: false },
      { image: 'mirror.example.com/kiln/run:bookworm', mirror: true },
    ]);
    assert.equal(r.rebasable, true);
    assert.deepEqual(
      r.processes.map((p) => [p.type, p.default]),
      [
        ['web', true],
        ['worker', false],
      ],
    );
    // npm counted once although written as CycloneDX and SPDX.
    assert.deepEqual(r.sbom?.ecosystems, { generic: 1, npm: 2 });
    assert.equal(r.sbom?.files.length, 3);
    assert.ok(!('io.buildpacks.lifecycle.metadata' in r.labels));
    assert.equal(r.labels['com.example.team'], 'web');
  });

  test('--bom keeps package lists', async () => {
    const { app } = await sample();
    const r = await inspectImage(app, { reference: 'my-app', bom: true });
    const npm = r.sbom!.files.find((f) => f.path.endsWith('node_modules/sbom.cdx.json'))!;
    assert.deepEqual(npm.packages, ['pkg:npm/express@4.21.2', 'pkg:npm/accepts@1.3.8']);
    const human = formatReport(r, 'human');
    assert.match(
      human,
      /node_modules\/sbom\.cdx\.json \(cyclonedx\):\n {4}pkg:npm\/express@4\.21\.2\n {4}pkg:npm\/accepts@1\.3\.8\n/,
    );
  });

  test('users: the build user from io.kiln.build.user, else the config layer owner; the run user from User', async () => {
    const { app } = await sample();
    // Without kiln's label (an image by pack), the lifecycle's config layer names the build user.
    const fallback = await inspectImage(app, { reference: 'my-app' });
    assert.deepEqual(fallback.users, { build: '0:0', run: '1001:1001', sameUid: false });
    const split = setConfig(app, {
      user: '1001:1000',
      labels: { ...(await labelsOf(app)), [BUILD_USER_LABEL]: '1000:1000' },
    });
    const r = await inspectImage(split, { reference: 'my-app' });
    assert.deepEqual(r.users, { build: '1000:1000', run: '1001:1000', sameUid: false });
    assert.match(formatReport(r, 'human'), /\nUsers:\n {2}Build: 1000:1000\n {2}Run: 1001:1000\n/);
    // One user for both (kiln's stacks before the run user): said plainly.
    const same = await inspectImage(setConfig(split, { user: '1000:1000' }), { reference: 'my-app' });
    assert.equal(same.users.sameUid, true);
    assert.match(
      formatReport(same, 'human'),
      /Run: 1000:1000 \(the build uid: the app can rewrite its layers\)/,
    );
    // A label that is not uid:gid is not shown (labels are the image author's).
    const bad = setConfig(app, { labels: { ...(await labelsOf(app)), [BUILD_USER_LABEL]: 'x\u001b[2J' } });
    assert.equal((await inspectImage(bad, { reference: 'my-app' })).users.build, '0:0');
  });

  test('an image without CNB labels is refused clearly', async () => {
    const run = await runImage({ patch: '1' });
    await assert.rejects(inspectImage(run, { reference: 'plain' }), /plain is not a buildpacks app image/);
  });

  for (const format of OUTPUT_FORMATS) {
    test(`output ${format} is stable (golden file)`, async () => {
      const { app } = await sample();
      const text = formatReport(await inspectImage(app, { reference: 'my-app' }), format);
      await golden(`app.${format === 'human' ? 'txt' : format}`, text);
    });
  }

  test('JSON and TOML outputs parse back to the same report', async () => {
    const { app } = await sample();
    const r = await inspectImage(app, { reference: 'my-app' });
    assert.deepEqual(JSON.parse(formatReport(r, 'json')), JSON.parse(JSON.stringify(r)));
    const toml = parseToml(formatReport(r, 'toml'));
    assert.deepEqual(JSON.parse(JSON.stringify(toml)), JSON.parse(JSON.stringify(r)));
  });
});
