import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runMain } from '../../test/helpers/cli.ts';
import { appImage, runImage, tarLayer } from '../../test/helpers/cnb-images.ts';
import { imageFrom } from '../oci/memory.ts';
import { debPurl, type SbomComponent } from '../sbom/model.ts';
import { attachSbom, KILN_TOOL, sbomDocuments } from '../stack/sbom.ts';
import { ImageStore } from '../store/store.ts';
import { downloadSbom } from './sbom-download.ts';

const require = createRequire(import.meta.url);

// CycloneDX 1.6 JSON schema (shipped by @cyclonedx/cyclonedx-library) through ajv.
function cyclonedxValidator(): (doc: unknown) => string[] {
  const Ajv = require('ajv').default;
  const addFormats = require('ajv-formats').default ?? require('ajv-formats');
  const dir = path.join(import.meta.dirname, '../../node_modules/@cyclonedx/cyclonedx-library/res/schema');
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  // bom-1.6 refers to its siblings by their file names; register them under those names.
  for (const f of ['spdx.SNAPSHOT.schema.json', 'jsf-0.82.SNAPSHOT.schema.json']) {
    const schema = JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
    schema.$id = `http://cyclonedx.org/schema/${f}`;
    ajv.addSchema(schema);
  }
  const validate = ajv.compile(
    JSON.parse(readFileSync(path.join(dir, 'bom-1.6.SNAPSHOT.schema.json'), 'utf8')),
  );
  return (doc) =>
    validate(doc)
      ? []
      : (validate.errors ?? []).map(
          (e: { instancePath: string; message: string }) => `${e.instancePath} ${e.message}`,
        );
}

// SPDX 2.3 required structure (no SPDX JSON schema is available offline here): the fields the
// schema requires at document and package level, and purls on every non-root package.
function spdxProblems(doc: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const k of ['spdxVersion', 'dataLicense', 'SPDXID', 'name', 'documentNamespace', 'creationInfo'])
    if (!(k in doc)) out.push(`missing ${k}`);
  if (doc.spdxVersion !== 'SPDX-2.3') out.push('spdxVersion');
  for (const p of doc.packages as Array<Record<string, unknown>>) {
    for (const k of ['SPDXID', 'name', 'downloadLocation']) if (!(k in p)) out.push(`package missing ${k}`);
  }
  return out;
}

const debs: SbomComponent[] = ['libc6', 'openssl', 'tzdata'].map((n) => ({
  name: n,
  version: '1.0',
  purl: debPurl(n, '1.0', 'amd64', 'debian-12'),
  licenses: ['MIT'],
}));

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-sbomdl-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('downloadSbom()', () => {
  test('writes the per-layer files in the standard layout and merged documents that validate', async () => {
    const run = await runImage({ patch: '1' });
    const app = await appImage({ run, runImageName: 'r', runImageReference: `r@${await run.digest()}` });
    const base = sbomDocuments(debs, {
      subject: { name: 'run' },
      epoch: 315532801,
      tool: KILN_TOOL,
    }).cyclonedx;
    const out = path.join(dir, 'out');
    const r = await downloadSbom({
      image: app,
      name: 'my-app',
      outputDir: out,
      baseSbom: base,
      epoch: 315532801,
      tool: KILN_TOOL,
    });
    assert.deepEqual(r.files, [
      'layers/sbom/launch/kiln_nodejs-engine/node/sbom.cdx.json',
      'layers/sbom/launch/kiln_npm-install/node_modules/sbom.cdx.json',
      'layers/sbom/launch/kiln_npm-install/node_modules/sbom.spdx.json',
    ]);
    assert.deepEqual(r.merged, ['sbom.cdx.json', 'sbom.spdx.json']);
    assert.deepEqual([r.components, r.osPackages], [6, 3]); // 3 debs + express, accepts, node
    const cdx = JSON.parse(await readFile(path.join(out, 'sbom.cdx.json'), 'utf8'));
    const validate = cyclonedxValidator();
    assert.deepEqual(validate(cdx), []);
    assert.notDeepEqual(
      validate({ ...cdx, components: [{ ...cdx.components[0], type: 'bogus' }] }),
      [],
      'the validator bites',
    );
    const purls = (cdx.components as Array<{ purl: string }>).map((c) => c.purl);
    assert.ok(purls.includes('pkg:npm/express@4.21.2'));
    assert.ok(purls.includes(debs[0]!.purl));
    const spdx = JSON.parse(await readFile(path.join(out, 'sbom.spdx.json'), 'utf8'));
    assert.deepEqual(spdxProblems(spdx), []);
    assert.equal((spdx.packages as unknown[]).length, 7); // the image + 6
    // The per-layer file is the layer's own bytes.
    assert.match(
      await readFile(path.join(out, 'layers/sbom/launch/kiln_nodejs-engine/node/sbom.cdx.json'), 'utf8'),
      /node/,
    );
  });

  test('--format limits files and merged documents', async () => {
    const run = await runImage({ patch: '1' });
    const app = await appImage({ run, runImageName: 'r', runImageReference: 'r@x' });
    const r = await downloadSbom({
      image: app,
      name: 'a',
      outputDir: path.join(dir, 'spdx-only'),
      formats: ['spdx'],
      epoch: 1,
      tool: KILN_TOOL,
    });
    assert.deepEqual(r.files, ['layers/sbom/launch/kiln_npm-install/node_modules/sbom.spdx.json']);
    assert.deepEqual(r.merged, ['sbom.spdx.json']);
  });
});

describe("the SBOM layer's run image document", () => {
  // The build writes the run image's SBOM into the SBOM layer; a rebase leaves that layer alone.
  const OLD = `sha256:${'1'.repeat(64)}`;
  const NEW = `sha256:${'2'.repeat(64)}`;
  const runDoc = (version: string) => {
    const comps = debs.map((d) => ({ ...d, version, purl: debPurl(d.name, version, 'amd64', 'debian-12') }));
    return sbomDocuments(comps, { subject: { name: 'run', digest: OLD }, epoch: 1, tool: KILN_TOOL })
      .cyclonedx;
  };
  async function imageOn(runReference: string) {
    const run = await runImage({ patch: '1' });
    const sbom = await tarLayer({
      'layers/sbom/launch/buildpacksio_lifecycle/run-image/sbom.cdx.json': JSON.stringify(runDoc('1.0')),
    });
    const cfg = await run.configFile();
    return imageFrom({
      config: {
        ...cfg,
        config: {
          Labels: {
            'io.buildpacks.lifecycle.metadata': JSON.stringify({
              runImage: { topLayer: cfg.rootfs.diff_ids.at(-1), reference: runReference },
              sbom: { sha: await sbom.diffID() },
            }),
          },
        },
      },
      layers: [...(await run.layers()), sbom],
    });
  }
  const purls = async (dir: string) =>
    (JSON.parse(await readFile(path.join(dir, 'sbom.cdx.json'), 'utf8')).components as { purl: string }[])
      .map((c) => c.purl)
      .sort();

  test('describes the current run image: its packages are the OS packages', async () => {
    const out = path.join(dir, 'run-doc-current');
    const r = await downloadSbom({
      image: await imageOn(`r@${OLD}`),
      name: 'a',
      outputDir: out,
      epoch: 1,
      tool: KILN_TOOL,
    });
    assert.deepEqual([r.osPackages, r.staleRunImageSbom], [3, false]);
    assert.deepEqual(await purls(out), debs.map((d) => d.purl).sort());
  });

  test('after a rebase: the found run image SBOM replaces it; without one it is left out', async () => {
    const image = await imageOn(`r@${NEW}`);
    const found = path.join(dir, 'run-doc-rebased');
    const r = await downloadSbom({
      image,
      name: 'a',
      outputDir: found,
      baseSbom: runDoc('2.0'),
      epoch: 1,
      tool: KILN_TOOL,
    });
    assert.deepEqual([r.osPackages, r.staleRunImageSbom], [3, false]);
    assert.ok(
      (await purls(found)).every((p) => p.includes('@2.0?')),
      'no package versions of the previous run image',
    );
    const none = path.join(dir, 'run-doc-stale');
    const s = await downloadSbom({ image, name: 'a', outputDir: none, epoch: 1, tool: KILN_TOOL });
    assert.deepEqual([s.osPackages, s.staleRunImageSbom, s.components], [0, true, 0]);
    // The layer's file itself is still written as the image holds it.
    assert.ok(s.files.includes('layers/sbom/launch/buildpacksio_lifecycle/run-image/sbom.cdx.json'));
  });
});

test('kiln sbom download finds the run image SBOM attached in the local store', async () => {
  const home = path.join(dir, 'home');
  const store = await ImageStore.open(ImageStore.defaultDir(home));
  const run = await runImage({ patch: '1' });
  const desc = await store.write(run, ['kiln/run:1']);
  await attachSbom(
    store.layout,
    desc,
    sbomDocuments(debs, { subject: { name: 'run' }, epoch: 1, tool: KILN_TOOL }),
  );
  const app = await appImage({
    run,
    runImageName: 'kiln/run:1',
    runImageReference: `kiln/run@${await run.digest()}`,
  });
  await store.write(app, ['my-app']);
  const { code, out, err } = await runMain(['sbom', 'download', 'my-app', '-o', path.join(dir, 'cli')], {
    HOME: dir,
    KILN_HOME: home,
  });
  assert.equal(code, 0, err);
  assert.match(err, /6 packages \(3 from the run image\)/);
  assert.ok(out.includes('sbom.cdx.json\n'));
});
