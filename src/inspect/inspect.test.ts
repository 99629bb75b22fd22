import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { appImage, runImage } from '../../test/helpers/cnb-images.ts';
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
