import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cyclonedxValidator, validateSpdx } from '../../test/helpers/sbom-schemas.ts';
import {
  encodeLaunchConfig,
  type LauncherInfo,
  launcherSbom,
  processTypesLayerEntries,
  writeLauncherSbom,
} from './index.ts';

const info: LauncherInfo = {
  name: 'kiln-launcher',
  version: '0.1.0',
  sha256: 'ab'.repeat(32),
  size: 1234,
  arch: 'amd64',
  musl: { package: 'musl-dev', source: 'musl', version: '1.2.3-1', arch: 'amd64', distro: 'debian-12' },
  path: '/nowhere/launcher',
};

test('writeLauncherSbom() writes CycloneDX, SPDX and Syft files at the lifecycle launcher SBOM path', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-lsbom-'));
  try {
    const files = await writeLauncherSbom(dir, info);
    assert.deepEqual(
      files.map((f) => path.relative(dir, f)),
      ['cdx', 'spdx', 'syft'].map((e) => `sbom/launch/buildpacksio_lifecycle/launcher/sbom.${e}.json`),
    );
    const cdx = JSON.parse(await readFile(files[0] as string, 'utf8'));
    assert.equal(cdx.bomFormat, 'CycloneDX');
    assert.equal(cdx.specVersion, '1.6');
    assert.equal(cdx.components[0].name, 'kiln-launcher');
    assert.deepEqual(cdx.components[0].hashes, [{ alg: 'SHA-256', content: info.sha256 }]);
    assert.equal(cdx.components[1].purl, 'pkg:deb/debian/musl@1.2.3-1?arch=amd64&distro=debian-12');
    assert.match(
      cdx.serialNumber,
      /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    const spdx = JSON.parse(await readFile(files[1] as string, 'utf8'));
    assert.equal(spdx.spdxVersion, 'SPDX-2.3');
    assert.equal(spdx.packages[0].checksums[0].checksumValue, info.sha256);
    assert.ok(
      spdx.relationships.some((r: { relationshipType: string }) => r.relationshipType === 'STATIC_LINK'),
    );
    const syft = JSON.parse(await readFile(files[2] as string, 'utf8'));
    assert.deepEqual(
      syft.artifacts.map((a: { name: string; version: string }) => `${a.name}@${a.version}`),
      ['kiln-launcher@0.1.0', 'musl@1.2.3-1'],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('launcherSbom() documents validate: CycloneDX 1.6 JSON schema, SPDX 2.3', () => {
  const docs = launcherSbom(info);
  assert.deepEqual(cyclonedxValidator()(JSON.parse(docs.cdx)), []);
  assert.deepEqual(validateSpdx(JSON.parse(docs.spdx)), []);
});

test('launcherSbom() is deterministic (no clock values)', () => {
  assert.deepEqual(launcherSbom(info), launcherSbom(info));
  assert.doesNotMatch(launcherSbom(info).spdx, new RegExp(String(new Date().getUTCFullYear())));
});

test('encodeLaunchConfig() writes NUL-separated records and decides the user-args mode per buildpack API', () => {
  const buf = encodeLaunchConfig({
    buildpacks: [
      { id: 'a/old', api: '0.8' },
      { id: 'b', api: '0.12' },
    ],
    defaultProcessType: 'web',
    processes: [
      {
        type: 'web',
        command: ['node', 'server.js'],
        args: ['--port', '8080'],
        buildpackId: 'b',
        workingDir: '/workspace/app',
      },
      {
        type: 'old',
        command: ['run $PORT'],
        args: [],
        buildpackId: 'a/old',
        execEnv: ['production', 'test'],
        direct: false,
      },
    ],
  });
  assert.deepEqual(buf.toString('utf8').split('\0'), [
    'kiln-launch 2',
    'bp',
    'a/old',
    '0.8',
    'bp',
    'b',
    '0.12',
    'default',
    'web',
    'proc',
    'web',
    '/workspace/app',
    'replace',
    'direct',
    '',
    '2',
    'node',
    'server.js',
    '2',
    '--port',
    '8080',
    'proc',
    'old',
    '',
    'append',
    'shell',
    'production,test',
    '1',
    'run $PORT',
    '0',
    '',
  ]);
});

test('encodeLaunchConfig() refuses a default type that is not a process and invalid type names', () => {
  assert.throws(
    () => encodeLaunchConfig({ buildpacks: [], processes: [], defaultProcessType: 'web' }),
    /default process type "web" is not among the processes/,
  );
  assert.throws(
    () =>
      encodeLaunchConfig({
        buildpacks: [],
        processes: [{ type: 'a/b', command: ['x'], args: [], buildpackId: 'x' }],
      }),
    /process type "a\/b" must match/,
  );
});

test('processTypesLayerEntries() links /cnb/process/<type> to the launcher, sorted', () => {
  const e = processTypesLayerEntries(['worker', 'web']);
  assert.deepEqual(
    e.map((x) => [x.path, x.type, x.linkname ?? '', x.uid]),
    [
      ['cnb', 'dir', '', 0],
      ['cnb/process', 'dir', '', 0],
      ['cnb/process/web', 'symlink', '/cnb/lifecycle/launcher', 0],
      ['cnb/process/worker', 'symlink', '/cnb/lifecycle/launcher', 0],
    ],
  );
  assert.deepEqual(processTypesLayerEntries([]), []);
});
