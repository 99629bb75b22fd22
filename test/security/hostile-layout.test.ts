// A hostile OCI image layout (oci:DIR, e.g. a builder handed over as a directory): index.json
// or a blob that is a link to a host file or to /dev/zero, a FIFO blob, a file that is not JSON.
// kiln never opens them through the link, never echoes their bytes and never waits on them; the
// error is the same whether the link's target exists or not.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readOciArchive } from '../../src/buildpackage/oci-archive.ts';
import { Layout } from '../../src/layout/layout.ts';
import { hexOf } from '../../src/oci/digest.ts';
import { runMain } from '../helpers/cli.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';

describe('hostile OCI layout', () => {
  let dir: string;
  let secret: string;
  let canary: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-hostile-layout-'));
    secret = `SECRET${randomBytes(8).toString('hex')}`;
    canary = path.join(dir, 'canary');
    await writeFile(canary, `${secret}:x:0:0\n`);
    await chmod(canary, 0o600);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A fresh layout holding an app image tagged "app"; returns its dir and the image's digests. */
  async function layout(): Promise<{ lay: string; config: string; layer: string }> {
    const lay = path.join(dir, `layout-${n++}`);
    const run = await runImage({ patch: '1' });
    const app = await appImage({ run, runImageName: 'r/run:1', runImageReference: 'r/run@sha256:0' });
    await (await Layout.init(lay)).writeImage(app, 'app');
    const m = await app.manifest();
    return { lay, config: m.config.digest, layer: m.layers.at(-1)!.digest };
  }
  const blob = (lay: string, d: string) => path.join(lay, 'blobs', 'sha256', hexOf(d as `sha256:${string}`));
  const inspect = (lay: string) => runMain(['inspect', `oci:${lay}:app`], { HOME: dir, KILN_HOME: dir });

  test('index.json linked to a host file: one line naming it, the same when the target is missing', async () => {
    const { lay } = await layout();
    await rm(path.join(lay, 'index.json'));
    await symlink(canary, path.join(lay, 'index.json'));
    const a = await inspect(lay);
    await rm(path.join(lay, 'index.json'));
    await symlink(path.join(dir, 'missing'), path.join(lay, 'index.json'));
    const b = await inspect(lay);
    assert.equal(a.code, 1);
    assert.equal(a.err, b.err);
    assert.equal(
      a.err,
      `ERROR: ${lay}/index.json is a symbolic link: expected a regular file inside the OCI layout\n`,
    );
    assert.ok(!a.err.includes(secret.slice(0, 6)));
  });

  test('a layer blob that is a FIFO is refused when opened, not waited on', async () => {
    const { lay, layer } = await layout();
    await rm(blob(lay, layer));
    execFileSync('mkfifo', [blob(lay, layer)]);
    const img = await (await Layout.open(lay)).image('app');
    const l = (await img.layers()).at(-1)!;
    await assert.rejects(l.compressed(), /is a FIFO: expected a regular file inside the blob store$/);
  });

  test('index.json that is not JSON is named without quoting its bytes', async () => {
    const { lay } = await layout();
    await writeFile(path.join(lay, 'index.json'), `${secret} and more`);
    const r = await inspect(lay);
    assert.equal(r.code, 1);
    assert.ok(!r.err.includes(secret.slice(0, 4)), r.err);
    assert.match(r.err, /invalid index\.json of .*: not JSON/);
  });

  test('a config blob linked to /dev/zero or to a host file, or a FIFO, fails at once', async () => {
    for (const make of ['zero', 'canary', 'fifo'] as const) {
      const { lay, config } = await layout();
      const victim = blob(lay, config);
      await rm(victim);
      if (make === 'fifo') execFileSync('mkfifo', [victim]);
      else await symlink(make === 'zero' ? '/dev/zero' : canary, victim);
      const started = Date.now();
      const r = await runMain(['inspect', `oci:${lay}:app`, '-o', 'json'], { HOME: dir, KILN_HOME: dir });
      assert.ok(Date.now() - started < 10_000, `${make}: took ${Date.now() - started} ms`);
      assert.notEqual(r.code, 0, make);
      assert.match(
        r.err,
        /is (a symbolic link|a FIFO): expected a regular file inside the blob store/,
        `${make}: ${r.err}`,
      );
      assert.ok(!r.err.includes(secret) && !r.out.includes(secret));
    }
  });

  /** A .cnb (OCI layout tar) from `members` (name → text; `@spaces:N` is N spaces), by Python's tarfile. */
  function cnb(members: Record<string, string>): string {
    const file = path.join(dir, `x-${n++}.cnb`);
    execFileSync(
      'python3',
      [
        '-c',
        `import io, sys, json, tarfile
m = json.loads(sys.argv[2])
with tarfile.open(sys.argv[1], 'w') as t:
    for name, body in m.items():
        b = b' ' * int(body[8:]) if body.startswith('@spaces:') else body.encode(); i = tarfile.TarInfo(name); i.size = len(b); t.addfile(i, io.BytesIO(b))`,
        file,
        JSON.stringify(members),
      ],
      { maxBuffer: 1 << 20 },
    );
    return file;
  }

  test('a .cnb whose manifest does not match the digest naming it is refused', async () => {
    const named = 'a'.repeat(64);
    const file = cnb({
      'oci-layout': '{"imageLayoutVersion":"1.0.0"}',
      'index.json': JSON.stringify({
        schemaVersion: 2,
        manifests: [
          { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${named}`, size: 2 },
        ],
      }),
      [`blobs/sha256/${named}`]: '{"schemaVersion":2,"config":{},"layers":[]}',
    });
    await assert.rejects(readOciArchive(file), /: manifest sha256:a{64}: content does not match its digest/);
  });

  test('a .cnb with a 40 MB index.json is refused before it is read', async () => {
    const file = cnb({ 'oci-layout': '{"imageLayoutVersion":"1.0.0"}', 'index.json': `@spaces:${40 << 20}` });
    await assert.rejects(
      readOciArchive(file),
      /: index\.json is 41943040 bytes; refusing more than 33554432$/,
    );
  });
});
