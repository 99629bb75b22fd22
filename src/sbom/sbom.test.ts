import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cyclonedxValidator } from '../../test/helpers/sbom-schemas.ts';
import { licensesFromCopyright } from '../debian/copyright.ts';
import { cyclonedxDocument } from './cyclonedx.ts';
import { spdxIdOf } from './dep5.ts';
import { debPurl, type SbomComponent } from './model.ts';
import { spdxDocument } from './spdx.ts';
import { validateSpdx } from './spdx-schema.ts';

const components: SbomComponent[] = [
  {
    name: 'libstdc++6',
    version: '12.2.0-14+deb12u1',
    purl: debPurl('libstdc++6', '12.2.0-14+deb12u1', 'amd64', 'debian-12'),
    licenses: ['GPL-3+', 'public-domain'],
    supplier: 'Person: Debian GCC Maintainers (debian-gcc@lists.debian.org)',
    description: 'GNU Standard C++ Library v3',
    sha256: 'a'.repeat(64),
    properties: { 'kiln:deb:source': 'gcc-12' },
  },
  {
    name: 'git',
    version: '1:2.39.5-0+deb12u3',
    purl: debPurl('git', '1:2.39.5-0+deb12u3', 'amd64', 'debian-12'),
    licenses: ['GPL-2', 'Expat', 'LGPL-2.1+'],
  },
  { name: 'express', version: '4.21.0', purl: 'pkg:npm/express@4.21.0', licenses: ['MIT'] },
];
const meta = {
  subject: { name: 'run', digest: `sha256:${'b'.repeat(64)}` },
  epoch: 315532801,
  tool: { name: 'kiln', version: '0.1.0' },
};

describe('debPurl()', () => {
  test('makes pkg:deb purls with arch and distro qualifiers, encoding the name', () => {
    assert.equal(
      debPurl('zlib1g', '1:1.2.13.dfsg-1', 'amd64', 'debian-12'),
      'pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12',
    );
    assert.equal(
      debPurl('libstdc++6', '12', 'amd64', 'debian-12'),
      'pkg:deb/debian/libstdc%2B%2B6@12?arch=amd64&distro=debian-12',
    );
  });
});

describe('licensesFromCopyright()', () => {
  test('reads License: short names of a DEP-5 file, splitting or/and and dropping exceptions', () => {
    const text = [
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
      'Upstream-Name: x',
      '',
      'Files: *',
      'Copyright: someone',
      'License: GPL-2+ or Artistic',
      '',
      'Files: lib/*',
      'License: GPL-3+ with GCC-exception',
      '',
      'License: GPL-2+',
      ' The full text...',
      ' .',
      ' more',
    ].join('\n');
    assert.deepEqual(licensesFromCopyright(text), ['Artistic', 'GPL-2+', 'GPL-3+']);
  });
  test('returns nothing for free-form copyright files', () => {
    assert.deepEqual(licensesFromCopyright('This is Debian GNU/Linux\nLicense: GPL\n'), []);
  });
  test('spdxIdOf maps Debian names and keeps SPDX ids', () => {
    assert.equal(spdxIdOf('Expat'), 'MIT');
    assert.equal(spdxIdOf('GPL-2+'), 'GPL-2.0-or-later');
    assert.equal(spdxIdOf('MIT'), 'MIT');
    assert.equal(spdxIdOf('public-domain'), undefined);
  });
});

describe('SBOM documents', () => {
  test('CycloneDX 1.6 output validates against the official schema and is deterministic', () => {
    const doc = cyclonedxDocument(components, meta);
    assert.deepEqual(cyclonedxValidator()(doc), []);
    assert.deepEqual(cyclonedxDocument([...components].reverse(), meta), doc);
    assert.equal(doc.specVersion, '1.6');
    assert.match(
      String(doc.serialNumber),
      /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.equal((doc.metadata as { timestamp: string }).timestamp, '1980-01-01T00:00:01Z');
    const libstd = (doc.components as { name: string; licenses: unknown[] }[]).find(
      (c) => c.name === 'libstdc++6',
    )!;
    assert.deepEqual(libstd.licenses, [
      { license: { id: 'GPL-3.0-or-later' } },
      { license: { name: 'public-domain' } },
    ]);
  });

  test('a different package set gives a different serial number', () => {
    assert.notEqual(
      cyclonedxDocument(components, meta).serialNumber,
      cyclonedxDocument(components.slice(1), meta).serialNumber,
    );
  });

  test('the CycloneDX validator rejects a broken document (it can fail)', () => {
    const doc = cyclonedxDocument(components, meta);
    (doc.components as Record<string, unknown>[])[0]!.licenses = [{ license: { id: 'Not-A-Licence' } }];
    assert.notDeepEqual(cyclonedxValidator()(doc), []);
  });

  test('SPDX 2.3 output validates, declares its LicenseRefs and describes the image', () => {
    const doc = spdxDocument(components, meta);
    assert.deepEqual(validateSpdx(doc), []);
    assert.deepEqual(spdxDocument([...components].reverse(), meta), doc);
    const pkgs = doc.packages as {
      name: string;
      licenseDeclared?: string;
      externalRefs?: { referenceLocator: string }[];
    }[];
    assert.equal(
      pkgs.find((p) => p.name === 'libstdc++6')!.licenseDeclared,
      'GPL-3.0-or-later AND LicenseRef-public-domain',
    );
    assert.equal(
      pkgs.find((p) => p.name === 'git')!.licenseDeclared,
      'GPL-2.0-only AND MIT AND LGPL-2.1-or-later',
    );
    assert.equal(pkgs.find((p) => p.name === 'git')!.externalRefs![0]!.referenceLocator, components[1]!.purl);
    assert.match(String(doc.documentNamespace), /^urn:uuid:/);
    assert.equal((doc.relationships as unknown[]).length, components.length + 1);
  });

  test('validateSpdx reports missing fields, bad ids and undeclared LicenseRefs', () => {
    const doc = spdxDocument(components, meta) as Record<string, unknown>;
    delete doc.hasExtractedLicensingInfos;
    assert.match(
      validateSpdx(doc).join('\n'),
      /LicenseRef-public-domain is not in hasExtractedLicensingInfos/,
    );
    assert.match(validateSpdx({ ...doc, spdxVersion: 'SPDX-2.2' }).join('\n'), /spdxVersion/);
    const bad = structuredClone(doc) as { packages: { SPDXID: string }[] };
    bad.packages[1]!.SPDXID = 'SPDXRef-has space';
    assert.match(validateSpdx(bad).join('\n'), /packages\.1\.SPDXID/);
  });
});
