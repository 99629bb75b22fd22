import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { formatNotices, packageDirs, readPackage } from '../../scripts/build.d/third-party-notices.ts';

// The bundled buildpacks travel in every builder image, with the npm code esbuild put into them:
// each carries THIRD-PARTY-NOTICES with those packages' license texts, and the legal comments.

const execFileP = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '..', '..');
let tmp: string;
let out: string;

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-notices-'));
  out = path.join(tmp, 'buildpacks');
  // The real bundling script, into a directory of its own (the repository's dist/ stays as it is).
  await execFileP('bash', [path.join(repo, 'scripts', 'build.d', 'buildpacks.sh')], {
    env: { ...process.env, KILN_BUILDPACKS_OUT: out },
  });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function version(name: string): Promise<string> {
  return JSON.parse(await readFile(path.join(repo, 'node_modules', name, 'package.json'), 'utf8')).version;
}

describe('THIRD-PARTY-NOTICES', () => {
  test('package directories: scoped names, nested copies, sources outside node_modules skipped', () => {
    assert.deepEqual(
      packageDirs([
        'node_modules/smol-toml/dist/parse.js',
        'node_modules/smol-toml/dist/util.js',
        'node_modules/@scope/pkg/lib/index.js',
        'node_modules/a/node_modules/b/index.js',
        '../../other/node_modules/semver/index.js',
        'buildpacks/procfile/src/detect.ts',
        'node_modules/.bin',
      ]),
      [
        'node_modules/smol-toml',
        'node_modules/@scope/pkg',
        'node_modules/a/node_modules/b',
        '../../other/node_modules/semver',
      ],
    );
  });

  test('a package without a license file says so and keeps its declared license', async () => {
    const p = await readPackage(path.join(repo, 'node_modules', 'xz-decompress'));
    assert.deepEqual(p.texts, []);
    assert.equal(p.license, 'MIT');
    assert.match(formatNotices('x', [p]), /ships no license file; its package\.json declares the license/);
  });

  test('each bundled buildpack lists exactly the npm packages bundled into it, with their texts', async () => {
    const smol = await version('smol-toml');
    const semver = await version('semver');
    const names = (await readdir(out, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    assert.ok(names.includes('procfile') && names.includes('nodejs-engine'), `bundled ${names}`);
    for (const name of names) {
      const notices = await readFile(path.join(out, name, 'THIRD-PARTY-NOTICES'), 'utf8');
      assert.match(notices, new RegExp(`^Third-party notices for the ${name} buildpack\\n`));
      const listed = [...notices.matchAll(/^ {2}(\S+) (\S+) \((.+)\)$/gm)].map(
        (m) => `${m[1]}@${m[2]} ${m[3]}`,
      );
      // Buildpacks that install Debian packages bundle the InRelease check (openpgp) and xz.
      const debian = ['go', 'python', 'java', 'ruby'].includes(name);
      const expected = [
        ...(debian ? [`openpgp@${await version('openpgp')} LGPL-3.0+`] : []),
        ...(name === 'nodejs-engine' ? [`semver@${semver} ISC`] : []),
        `smol-toml@${smol} BSD-3-Clause`,
        ...(debian ? [`xz-decompress@${await version('xz-decompress')} MIT`] : []),
      ];
      assert.deepEqual(listed, expected, name);
      assert.match(notices, /Redistribution and use in source and binary forms/);
      if (name === 'nodejs-engine')
        assert.match(notices, /Permission to use, copy, modify, and\/or distribute/);
      // No metafile or other build residue beside the buildpack; openpgp, kept out of the Debian
      // buildpacks' bundles (loaded only to check a signature), in their own node_modules.
      assert.deepEqual((await readdir(path.join(out, name))).sort(), [
        'THIRD-PARTY-NOTICES',
        'bin',
        'buildpack.toml',
        ...(debian ? ['node_modules'] : []),
        'package.json',
      ]);
      if (debian) {
        assert.deepEqual((await readdir(path.join(out, name, 'node_modules', 'openpgp'))).sort(), [
          'index.mjs',
          'package.json',
        ]);
        const bundle = await readFile(path.join(out, name, 'bin', 'build'), 'utf8');
        assert.match(bundle, /import\("openpgp"\)/);
        assert.doesNotMatch(bundle, /OpenPGP\.js v/, 'openpgp is not in bin/build');
      }
      // The legal comment of smol-toml's sources stays in the bundled code.
      const bin = await readdir(path.join(out, name, 'bin'));
      const code = (await Promise.all(bin.map((f) => readFile(path.join(out, name, 'bin', f), 'utf8')))).join(
        '',
      );
      assert.match(code, /Bundled license information:\n\nsmol-toml\/dist\//);
    }
    assert.deepEqual(
      (await readdir(out)).filter((f) => f.startsWith('.')),
      ['.inputs.sha256'],
    );
  });
});
