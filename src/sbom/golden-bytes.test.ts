import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { cycloneDx, spdx, syft } from '../../buildpacks/_shared/sbom.ts';
import { launcherSbom } from '../launcher/sbom.ts';
import { caSbom } from '../platform/ca-certs.ts';
import { cyclonedxDocument } from './cyclonedx.ts';
import { debPurl, type SbomComponent, type SbomMeta } from './model.ts';
import { spdxDocument } from './spdx.ts';

// Every SBOM kiln writes ends up in an image (the stack's SBOM files and referrers, the launcher's
// in every app image's SBOM layer, the buildpacks' layer SBOMs): one changed byte changes a digest.
// These hashes are of the documents as they were before the writers shared one module; they must
// never change by accident.

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const text = (o: unknown) => `${JSON.stringify(o, null, 2)}\n`;

test('stack SBOM documents keep their bytes', () => {
  const components: SbomComponent[] = [
    {
      name: 'libc6',
      version: '2.36-9+deb12u4',
      purl: debPurl('libc6', '2.36-9+deb12u4', 'amd64', 'debian-12'),
      licenses: ['LGPL-2.1+', 'GPL-2', 'Unicode-DFS-2016-ish'],
      supplier: 'Debian',
      description: 'GNU C Library: Shared libraries',
      sha256: 'cd'.repeat(32),
      properties: { 'kiln:source': 'glibc', 'kiln:arch': 'amd64' },
    },
    {
      name: 'base-files',
      version: '12.4',
      purl: debPurl('base-files', '12.4', 'amd64', 'debian-12'),
      licenses: [],
    },
  ];
  const meta: SbomMeta = {
    subject: { name: 'run', version: '12', digest: `sha256:${'ef'.repeat(32)}` },
    epoch: 1700000000,
    tool: { name: 'kiln', version: '0.1.0' },
  };
  assert.equal(sha(text(cyclonedxDocument(components, meta))), GOLDEN.stackCdx);
  assert.equal(sha(text(spdxDocument(components, meta))), GOLDEN.stackSpdx);
});

test('launcher SBOM documents keep their bytes', () => {
  const d = launcherSbom({
    name: 'kiln-launcher',
    version: '0.1.0',
    sha256: 'ab'.repeat(32),
    size: 1234,
    arch: 'amd64',
    musl: { package: 'musl-dev', source: 'musl', version: '1.2.3-1', arch: 'amd64', distro: 'debian-12' },
    path: '/nowhere/launcher',
  });
  assert.deepEqual([sha(d.cdx), sha(d.spdx), sha(d.syft)], GOLDEN.launcher);
});

test('buildpack layer SBOM documents keep their bytes', () => {
  const components = [
    {
      name: '@scope/pkg',
      version: '1.2.3',
      purl: 'pkg:npm/%40scope/pkg@1.2.3',
      type: 'library' as const,
      ecosystem: 'npm',
      license: 'MIT OR Apache-2.0',
      sha512: '12'.repeat(64),
      sha1: '34'.repeat(20),
    },
    {
      name: 'node',
      version: '22.1.0',
      purl: 'pkg:generic/node@22.1.0',
      type: 'application' as const,
      ecosystem: 'binary',
      license: 'SEE LICENSE IN x',
    },
  ];
  const tool = { name: 'kiln/npm-install', version: '0.1.0' };
  assert.deepEqual(
    [
      sha(text(cycloneDx(components, tool))),
      sha(text(spdx(components, tool, { SOURCE_DATE_EPOCH: '1700000000' }, 'kiln_npm-install/node_modules'))),
      sha(text(spdx(components, tool, {}, 'kiln_npm-install/launch'))),
      sha(text(syft(components, tool))),
    ],
    GOLDEN.buildpack,
  );
});

test('the --ca-certs-launch layer SBOM keeps its bytes', () => {
  const certs = [
    { pem: 'x', fingerprint: '9a'.repeat(32), subject: 'CN=Corp Root CA,O=Corp', source: '/a.pem' },
    { pem: 'y', fingerprint: '1b'.repeat(32), subject: 'CN=Proxy CA', source: '/b.pem' },
  ];
  assert.equal(sha(text(caSbom(certs))), GOLDEN.caCerts);
});

const GOLDEN = {
  caCerts: 'a23015c5a6543fa268df7df9479ff05550cf4ee81c053d1190a3b81e4ca72bd1',
  stackCdx: '0272b396ed9240141cc0975cf455e791aca4a3fc5ca233eb3c7a2e5c8f7d0bda',
  stackSpdx: 'ca92f957bf882064783cb6379c2d6dbd8febb6ecf71c514d882d32038a44e609',
  launcher: [
    '67c0ede6c92fef33a4a8a70b60e37a1ddf65ccc724406741a583dd7a522af010',
    '5a7e0634b4005e9d1c14cf098fe3febd9eecc85811edeb63f05a170158f731af',
    'b183468e71dfdfa1341455382372e1cffc9ce6d8b2ec4bf9e281065ffb194f4b',
  ],
  buildpack: [
    'f9eacd9716054e47ca5d210dd4db519d4f1b1983d6a1d1adf6157ac022db3511',
    'ef17b86c1fe1dab30f5daa7c8e7a04be207331f746148aff8c52235f2143ee4a',
    '9eaec6d11b96b039e5cf7ef64a9c93fc10733dd0c889581e7a03a6e4fbab5b2e',
    '908bc20a6a27220c6bfd2f81658e5d6deb29a1fc1dbb9c0019a3e9cf598dc6de',
  ],
};
