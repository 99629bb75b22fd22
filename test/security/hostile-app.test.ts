// A hostile app directory, copied by kiln (root) into the build's workspace: links to host files
// and directories, a FIFO and a socket, names with newlines and escapes, a 2000-deep nesting, a
// project.toml including "../" and absolute paths, and files swapped for a link or a FIFO while
// the copy runs (the race is injected through the filter, which runs between listing and copy).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { copyAppSource } from '../../src/platform/app-source.ts';
import { type SourceFilter, sourceFilter } from '../../src/platform/source-filter.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;
const all = sourceFilter(undefined, undefined);

describe('hostile app directory', { skip: !asRoot && 'needs root' }, () => {
  let e: E2E;
  let tmp: string;
  let secret: string;
  let canary: string;
  before(async () => {
    e = await makeE2E();
    tmp = await mkdtemp(path.join(tmpdir(), 'kiln-hostile-app-'));
    secret = `KILN-APP-CANARY-${randomBytes(12).toString('hex')}`;
    canary = path.join(tmp, 'canary');
    await writeFile(canary, secret);
    await chmod(canary, 0o600);
  });
  after(async () => {
    await e?.cleanup();
    // node's rm walks by path and stops at PATH_MAX; rm(1) does not.
    if (tmp) execFileSync('rm', ['-rf', tmp]);
  });

  /** Every layer of `image` uncompressed, concatenated. */
  async function imageBytes(name: string): Promise<Buffer> {
    const img = await e.store.find(name);
    assert.ok(img);
    const out: Buffer[] = [];
    for (const l of await img.layers()) for await (const c of await l.uncompressed()) out.push(c as Buffer);
    return Buffer.concat(out);
  }

  test('links to host files and directories stay links; FIFOs and sockets are skipped; odd names copy; the build finishes', async () => {
    const app = await e.app('hostile-app', 'hi');
    await mkdir(path.join(tmp, 'hostdir'));
    await writeFile(path.join(tmp, 'hostdir', 'f'), secret);
    await symlink(canary, path.join(app, 'leak'));
    await symlink(path.join(tmp, 'hostdir'), path.join(app, 'leakdir'));
    execFileSync('mkfifo', [path.join(app, 'fifo')]);
    const server = net.createServer().listen(path.join(app, 'sock'));
    await new Promise((r) => server.once('listening', r));
    await writeFile(path.join(app, 'odd\nname\x1b]0;x\x07'), 'odd');
    await writeFile(
      path.join(app, 'project.toml'),
      '[_]\nschema-version = "0.2"\n[io.buildpacks]\nexclude = ["!../canary", "!/etc/shadow"]\n',
    );
    try {
      const started = Date.now();
      const r = await e.build(app, 'hostile/app');
      assert.ok(Date.now() - started < 60_000);
      const bytes = await imageBytes(r.names[0]!);
      assert.ok(!bytes.includes(secret), "the host files' content is not in the image");
      assert.ok(bytes.includes(Buffer.from(canary)), 'the link is in the image as a link');
      assert.ok(bytes.includes(Buffer.from('odd\nname\x1b]0;x\x07')));
      for (const l of r.log.lines) assert.doesNotMatch(l, /\x1b\]/, l);
    } finally {
      server.close();
    }
  });

  test('a 2000-deep nesting fails in one line, exit code 3, without ENAMETOOLONG', async () => {
    const app = path.join(tmp, 'deep');
    await mkdir(app);
    execFileSync('python3', [
      '-c',
      'import os,sys\nos.chdir(sys.argv[1])\nfor i in range(2000):\n  os.mkdir("d"); os.chdir("d")',
      app,
    ]);
    const err = await copyAppSource(app, path.join(tmp, 'deep-out'), all).then(
      () => assert.fail('expected a refusal'),
      (x: unknown) => x,
    );
    assert.ok(err instanceof KilnError, String(err));
    assert.equal(exitCodeOf(err), 3);
    assert.match(
      err.message,
      /^app directory .*deep: "d\/d\/d.*…" is nested deeper than kiln copies \(paths up to 3072 bytes\)$/,
    );
    assert.ok(err.message.length < 300);
  });

  for (const swap of ['a link to a host file', 'a FIFO'] as const) {
    test(`a file swapped for ${swap} between listing and copy is never read`, async () => {
      const app = await mkdtemp(path.join(tmp, 'race-'));
      const dst = path.join(tmp, `${path.basename(app)}-out`);
      await writeFile(path.join(app, 'victim'), 'ordinary');
      // The filter runs after the file was listed (lstat) and before it is opened.
      const racing: SourceFilter = {
        mode: 'all',
        mayContain: () => true,
        includes(rel) {
          if (rel === 'victim') {
            execFileSync('rm', [path.join(app, 'victim')]);
            if (swap === 'a FIFO') execFileSync('mkfifo', [path.join(app, 'victim')]);
            else execFileSync('ln', ['-s', canary, path.join(app, 'victim')]);
          }
          return true;
        },
      };
      const err = await copyAppSource(app, dst, racing).then(
        () => undefined,
        (x: unknown) => x,
      );
      assert.ok(err instanceof KilnError, String(err));
      assert.match(
        err.message,
        /^app directory: "victim" changed while it was copied( \(\w+\))?: expected the regular file listed$/,
      );
      const copied = await lstat(path.join(dst, 'victim')).catch(() => undefined);
      if (copied?.isFile()) assert.ok(!(await readFile(path.join(dst, 'victim'), 'utf8')).includes(secret));
      if (copied?.isSymbolicLink()) assert.equal(await readlink(path.join(dst, 'victim')), canary);
      await rm(dst, { recursive: true, force: true });
    });
  }
});
