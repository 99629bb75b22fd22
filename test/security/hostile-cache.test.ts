// A hostile build cache: cache.json (the volume cache's state) or a previous image's
// io.buildpacks.lifecycle.metadata label naming layers with "..". Layer names become paths on
// restore (`<layers>/<bp>/<name>` is removed, replaced and chowned; `<name>.toml` is written), so
// a name climbing out would have kiln, as root, delete, overwrite or chown host directories.
// Such a document is refused where it is parsed (a broken cache.json fails the restore naming
// the file, never read as "no cache"), and a buildpack cannot make a layer named "." either.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { parseCacheMetadata, parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

describe('hostile cache and layer names', { skip: !asRoot && 'needs root' }, () => {
  let e: E2E;
  let n = 0;
  before(async () => {
    e = await makeE2E();
  });
  after(async () => {
    await e?.cleanup();
  });

  async function buildpack(id: string, script: string): Promise<string> {
    const d = path.join(e.root, 'bps', String(n++));
    await mkdir(path.join(d, 'bin'), { recursive: true });
    await writeFile(
      path.join(d, 'buildpack.toml'),
      `api = "0.12"\n[buildpack]\nid = "${id}"\nversion = "1"\n`,
    );
    await writeFile(path.join(d, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n');
    await writeFile(path.join(d, 'bin', 'build'), `#!/usr/bin/env bash\nset -eu\n${script}\n`);
    for (const b of ['detect', 'build']) await chmod(path.join(d, 'bin', b), 0o755);
    return d;
  }

  test('cache.json naming a cached layer "../../…/victim" touches nothing outside the layers directory', async () => {
    const victim = path.join(e.root, 'victim');
    await mkdir(victim, { mode: 0o700 });
    await writeFile(path.join(victim, 'precious'), 'p');
    const bp = await buildpack(
      'hostile/cache',
      'mkdir -p "$1/c"; echo cached > "$1/c/f"; printf "[types]\\ncache = true\\n" > "$1/c.toml"',
    );
    const app = await e.app('cache-app', 'hi');
    const image = 'hostile/cache-app';
    await e.build(app, image, { buildpacks: [bp] });
    const cacheDir = path.join(e.root, 'cache', image.replace(/[^a-z0-9]+/g, '_'));
    const file = path.join(cacheDir, 'cache.json');
    const state = JSON.parse(await readFile(file, 'utf8'));
    const layers = state.metadata.buildpacks[0].layers;
    const climb = `../../../../../../../../../../..${victim}`;
    layers[climb] = layers.c;
    delete layers.c;
    await writeFile(file, JSON.stringify(state));
    const err = await e.build(app, image, { buildpacks: [bp] }).then(
      () => assert.fail('expected the restore to fail'),
      (x: unknown) => x,
    );
    assert.ok(err instanceof KilnError, String(err));
    assert.match(
      err.message,
      /cache\.json: not a valid cache state \(.*layer name .*expected one path component/,
    );
    assert.equal(exitCodeOf(err), 42, 'the restore step');
    assert.deepEqual(await readdir(victim), ['precious'], 'the host directory was not replaced');
    const st = await stat(victim);
    assert.equal(st.uid, 0, 'the host directory was not chowned to the build user');
    assert.equal(st.mode & 0o777, 0o700);
    assert.ok(!(await readdir(e.root)).includes('victim.toml'), 'no layer toml written next to it');
  });

  test('a cached layer tar whose layers/<bp> is a link to a host directory does not move or chown it', async () => {
    // The victim's parent plays root's home: a name in it (".ssh") is a valid layer name.
    const home = path.join(e.root, 'home-of-root');
    await mkdir(path.join(home, '.ssh'), { recursive: true, mode: 0o700 });
    await writeFile(path.join(home, '.ssh', 'id_ed25519'), 'PRIVATE KEY');
    const bp = await buildpack(
      'hostile/linkcache',
      'mkdir -p "$1/c"; echo cached > "$1/c/f"; printf "[types]\\ncache = true\\n" > "$1/c.toml"',
    );
    const app = await e.app('linkcache-app', 'hi');
    const image = 'hostile/linkcache-app';
    await e.build(app, image, { buildpacks: [bp] });
    const cacheDir = path.join(e.root, 'cache', image.replace(/[^a-z0-9]+/g, '_'));
    // A plain tar: layers/ and layers/hostile_linkcache -> the host directory.
    const tar = execFileSync('python3', [
      '-c',
      `import io, sys, tarfile
b = io.BytesIO()
with tarfile.open(fileobj=b, mode='w') as t:
    d = tarfile.TarInfo('layers'); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    l = tarfile.TarInfo('layers/hostile_linkcache'); l.type = tarfile.SYMTYPE; l.linkname = sys.argv[1]; t.addfile(l)
sys.stdout.buffer.write(b.getvalue())`,
      home,
    ]);
    const digest = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
    await writeFile(path.join(cacheDir, 'blobs', 'sha256', digest.slice(7)), tar);
    const file = path.join(cacheDir, 'cache.json');
    const state = JSON.parse(await readFile(file, 'utf8'));
    state.layers[digest] = { digest, size: tar.length, mediaType: 'application/vnd.oci.image.layer.v1.tar' };
    state.metadata.buildpacks[0].layers = { '.ssh': { sha: digest, cache: true } };
    await writeFile(file, JSON.stringify(state));
    const r = await e.build(app, image, { buildpacks: [bp] });
    assert.deepEqual(
      await readdir(path.join(home, '.ssh')),
      ['id_ed25519'],
      'the host directory is still there',
    );
    const st = await stat(path.join(home, '.ssh'));
    assert.equal(st.uid, 0, 'and still root-owned');
    assert.ok(
      r.log.lines.some((l) =>
        /^Warning: Skipping restore of 'hostile\/linkcache:\.ssh': .*is a symbolic link/.test(l),
      ),
      r.log.lines.join('\n'),
    );
  });

  test('a cache or image label naming a layer with ".." or "/" is refused in one line naming the field', () => {
    const doc = (name: string) =>
      JSON.stringify({ buildpacks: [{ key: 'a', layers: { [name]: { sha: 'sha256:0', cache: true } } }] });
    for (const name of ['..', '.', '../x', 'a/b', 'x\x1b[2J']) {
      for (const parse of [parseCacheMetadata, parseLifecycleMetadata]) {
        assert.throws(
          () => parse(doc(name)),
          (err: Error) => {
            assert.match(
              err.message,
              /^invalid io\.buildpacks\.lifecycle\.(cache\.)?metadata label: field "buildpacks\.0\.layers": layer name ".*": expected one path component/,
            );
            assert.doesNotMatch(err.message, /[\n\x1b]/);
            return true;
          },
        );
      }
    }
    assert.deepEqual(Object.keys(parseCacheMetadata(doc('node_modules')).buildpacks![0]!.layers!), [
      'node_modules',
    ]);
  });

  test('a buildpack layer named "." (a file "..toml") fails the export naming it', async () => {
    const bp = await buildpack('hostile/dot', 'printf "[types]\\nlaunch = true\\n" > "$1/..toml"');
    const app = await e.app('dot-app', 'hi');
    const err = await e.build(app, `hostile/dot-${n++}`, { buildpacks: [bp] }).then(
      () => assert.fail('expected the build to fail'),
      (x: unknown) => x,
    );
    assert.ok(err instanceof KilnError, String(err));
    assert.match(err.message, /^layers\/hostile_dot\/\.\.toml: layer name "\.": expected one path component/);
    assert.equal(exitCodeOf(err), 62);
  });
});
