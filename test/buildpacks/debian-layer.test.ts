import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  access,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { installDebLayer, relativizeLinks } from '../../buildpacks/_shared/debian/install.ts';
import { debianSource } from '../../buildpacks/_shared/debian/source.ts';
import { mirrorForSuite, readAptSources } from '../../src/debian/sources.ts';
import { trustEnv } from './harness.ts';

// The buildpacks' Debian-packages-as-layers library against the real Debian archive (the mirror of
// this machine's apt sources, verified with its keyring): Debian's `hello` unpacked into a layer.
// The packages this host has installed count as present, as the build image's do in a build.

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const OTHER_KEYS = '/usr/share/keyrings/debian-archive-removed-keys.gpg';
const TOOL = { name: 'test', version: '0' };

const apt = await readAptSources().catch(() => []);
const codename = /^VERSION_CODENAME=(\w+)$/m.exec(
  await readFile('/etc/os-release', 'utf8').catch(() => ''),
)?.[1];
const mirror = codename ? mirrorForSuite(apt, codename) : undefined;
const security = codename ? mirrorForSuite(apt, `${codename}-security`) : undefined;
const ready = await access(KEYRING).then(
  () => mirror !== undefined,
  () => false,
);
const skip = ready ? false : 'needs a Debian host with apt sources and debian-archive-keyring';

function envWith(keyring = KEYRING): NodeJS.ProcessEnv {
  const suites = [`${codename}=${mirror}`, ...(security ? [`${codename}-security=${security}`] : [])];
  return { ...trustEnv(), KILN_DEBIAN_SUITES: suites.join(' '), KILN_DEBIAN_KEYRING: keyring };
}

describe('installDebLayer()', { skip }, () => {
  let layers: string;
  before(async () => {
    layers = await mkdtemp(path.join(tmpdir(), 'kiln-deb-layer-'));
  });
  after(async () => {
    await rm(layers, { recursive: true, force: true });
  });

  test('unpacks a verified package into the layer, with pkg:deb purls in its SBOM', async () => {
    const layer = await installDebLayer({
      layersDir: layers,
      layer: 'hello',
      packages: ['hello'],
      types: { build: true, cache: true },
      env: envWith(),
      tool: TOOL,
    });
    assert.equal(layer.reused, false);
    // libc6 is installed on this host: only hello itself goes into the layer.
    assert.deepEqual(
      layer.packages.map((p) => p.name),
      ['hello'],
    );
    const out = execFileSync(path.join(layer.dir, 'usr/bin/hello'), { encoding: 'utf8' });
    assert.match(out, /Hello, world!/);
    await assert.rejects(access(path.join(layer.dir, 'usr/share/doc')), 'documentation is left out');
    const sbom = JSON.parse(await readFile(path.join(layers, 'hello.sbom.cdx.json'), 'utf8'));
    const purls = sbom.components.map((c: { purl: string }) => c.purl);
    assert.ok(
      purls.some((p: string) => /^pkg:deb\/debian\/hello@[^?]+\?arch=amd64&distro=debian-\d+$/.test(p)),
      purls.join(' '),
    );
    const toml = await readFile(path.join(layers, 'hello.toml'), 'utf8');
    assert.match(toml, /build = true/);
    assert.match(toml, /key = "[0-9a-f]{64}"/);
    assert.match(await readFile(path.join(layers, 'hello-debs.toml'), 'utf8'), /cache = true/);
  });

  test('keeps the layer untouched while the archive and the request are the same', async () => {
    const before = await stat(path.join(layers, 'hello/usr/bin/hello'));
    const layer = await installDebLayer({
      layersDir: layers,
      layer: 'hello',
      packages: ['hello'],
      types: { build: true, cache: true },
      env: envWith(),
      tool: TOOL,
    });
    assert.equal(layer.reused, true);
    assert.equal((await stat(path.join(layers, 'hello/usr/bin/hello'))).mtimeMs, before.mtimeMs);
  });

  test('a cached .deb whose bytes changed is fetched again, never unpacked', async () => {
    const debs = path.join(layers, 'hello-debs', 'debs');
    const [deb] = await readdir(debs);
    assert.ok(deb?.endsWith('.deb'));
    await writeFile(path.join(debs, deb!), 'not the package');
    // Without the layer (only the cache came back), the set is unpacked again from the cache.
    await rm(path.join(layers, 'hello'), { recursive: true });
    const layer = await installDebLayer({
      layersDir: layers,
      layer: 'hello',
      packages: ['hello'],
      types: { build: true },
      env: envWith(),
      tool: TOOL,
    });
    assert.equal(layer.reused, false);
    assert.match(execFileSync(path.join(layer.dir, 'usr/bin/hello'), { encoding: 'utf8' }), /Hello/);
  });

  test('an InRelease not signed by a key of the keyring fails, even with a previous layer', async () => {
    await assert.rejects(
      installDebLayer({
        layersDir: layers,
        layer: 'hello',
        packages: ['hello'],
        types: { build: true },
        env: envWith(OTHER_KEYS),
        tool: TOOL,
      }),
      /Debian packages: InRelease .*: no valid signature by a key in/,
    );
  });

  test('an unknown package fails naming it and the suites', async () => {
    await assert.rejects(
      installDebLayer({
        layersDir: layers,
        layer: 'nope',
        packages: ['no-such-package-kiln'],
        types: { build: true },
        env: envWith(),
        tool: TOOL,
      }),
      /cannot resolve package no-such-package-kiln: no such package in suites/,
    );
  });
});

describe('debianSource()', () => {
  test('reads suites with their mirrors; a missing setting is one clear line', () => {
    const s = debianSource({
      KILN_DEBIAN_SUITES:
        'bookworm=http://m.example/debian bookworm-security=https://s.example/debian-security',
      KILN_DEBIAN_KEYRING: '/platform/kiln/k.gpg',
    });
    assert.deepEqual(s.suites, [
      { suite: 'bookworm', mirror: 'http://m.example/debian' },
      { suite: 'bookworm-security', mirror: 'https://s.example/debian-security' },
    ]);
    assert.deepEqual(s.components, ['main']);
    assert.throws(() => debianSource({}), /no Debian archive configured for this build/);
    assert.throws(
      () => debianSource({ KILN_DEBIAN_SUITES: 'bookworm=file:///etc', KILN_DEBIAN_KEYRING: '/k' }),
      /is not suite=http\(s\):\/\/mirror/,
    );
    assert.throws(
      () => debianSource({ KILN_DEBIAN_SUITES: '../x=http://m/', KILN_DEBIAN_KEYRING: '/k' }),
      /is not suite=http/,
    );
  });
});

describe('relativizeLinks()', () => {
  test('absolute links and links climbing above the layer point into the layer; others stay', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-deb-links-'));
    try {
      await mkdir(path.join(root, 'usr/bin'), { recursive: true });
      await symlink('/usr/lib/go/bin/go', path.join(root, 'usr/bin/abs'));
      await symlink('../../../../etc/passwd', path.join(root, 'usr/bin/climb'));
      await symlink('hello', path.join(root, 'usr/bin/plain'));
      await symlink('../share/x', path.join(root, 'usr/bin/up'));
      await relativizeLinks(root, root);
      const at = async (n: string) =>
        path.resolve(path.join(root, 'usr/bin'), await readlink(path.join(root, 'usr/bin', n)));
      assert.equal(await at('abs'), path.join(root, 'usr/lib/go/bin/go'));
      assert.equal(await at('climb'), path.join(root, 'etc/passwd'));
      assert.equal(await readlink(path.join(root, 'usr/bin/plain')), 'hello');
      assert.equal(await readlink(path.join(root, 'usr/bin/up')), '../share/x');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
