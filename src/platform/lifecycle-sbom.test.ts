import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cyclonedxValidator, validateSpdx } from '../../test/helpers/sbom-schemas.ts';
import { LIFECYCLE_SBOM_DIR, lifecycleSbom, writeLifecycleSbom } from './lifecycle-sbom.ts';

const facts = {
  version: '0.1.0',
  dependencies: [
    { name: 'zod', version: '4.6.7' },
    { name: 'commander', version: '15.1.0' },
    { name: '@scope/pkg', version: '1.0.0' },
  ],
};

test('the lifecycle SBOM lists kiln and its npm dependencies; CycloneDX 1.6 and SPDX 2.3 validate; same input, same bytes', () => {
  const d = lifecycleSbom(facts);
  const cdx = JSON.parse(d.cdx);
  assert.deepEqual(cyclonedxValidator()(cdx), []);
  assert.deepEqual(validateSpdx(JSON.parse(d.spdx)), []);
  assert.deepEqual(
    cdx.components.map((c: { purl: string }) => c.purl),
    ['pkg:npm/%40scope/pkg@1.0.0', 'pkg:npm/commander@15.1.0', 'pkg:npm/zod@4.6.7'],
  );
  assert.equal(cdx.metadata.component.purl, 'pkg:npm/kiln@0.1.0');
  assert.equal(JSON.parse(d.syft).artifacts.length, 4);
  assert.deepEqual(lifecycleSbom({ ...facts, dependencies: [...facts.dependencies].reverse() }), d);
});

test('writeLifecycleSbom replaces links a buildpack left on the way and never writes through them', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'kiln-lifecycle-sbom-'));
  try {
    const out = path.join(root, 'sbom');
    const elsewhere = path.join(root, 'elsewhere');
    await mkdir(path.join(out, 'build'), { recursive: true });
    await mkdir(elsewhere);
    // As copied from <layers>/sbom: build/buildpacksio_lifecycle is a link out of the tree.
    await symlink(elsewhere, path.join(out, 'build', 'buildpacksio_lifecycle'));
    await writeFile(path.join(elsewhere, 'keep'), 'x');
    await writeLifecycleSbom(out, facts);
    const file = path.join(out, LIFECYCLE_SBOM_DIR.split('/').slice(1).join('/'), 'sbom.cdx.json');
    const body = await readFile(file, 'utf8');
    assert.equal(body, lifecycleSbom(facts).cdx);
    assert.equal(
      createHash('sha256').update(body).digest('hex'),
      createHash('sha256').update(lifecycleSbom(facts).cdx).digest('hex'),
    );
    await assert.rejects(readFile(path.join(elsewhere, 'sbom.cdx.json')), /ENOENT/);
    assert.equal(await readFile(path.join(elsewhere, 'keep'), 'utf8'), 'x');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
