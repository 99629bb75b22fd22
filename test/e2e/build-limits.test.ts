// Limits through the whole platform (runBuild, as `kiln build` runs it): a hung buildpack is
// stopped at the build's deadline, a disk filler at the disk budget, and a deadline that passes
// during kiln's own phases ends the build there. Each ends with the spec's exit code and one line,
// leaves the previous image as it was and no temp dir behind.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { ExitCode } from '../../src/cnb/exit-codes.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { Deadline } from '../../src/lifecycle/deadline.ts';
import { type E2E, makeE2E } from './build-fixture.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

describe('limits of a whole build', { skip: !asRoot && 'needs root (build as uid 1000)' }, () => {
  let w: E2E;
  before(async () => {
    w = await makeE2E();
  });
  after(async () => {
    await w?.cleanup();
  });

  /** A buildpack directory whose bin/build is `body` (bin/detect passes). */
  async function buildpack(id: string, body: string): Promise<string> {
    const dir = path.join(w.root, id.replace('/', '-'));
    await fs.mkdir(path.join(dir, 'bin'), { recursive: true });
    await fs.writeFile(
      path.join(dir, 'buildpack.toml'),
      `api = "0.12"\n[buildpack]\nid = "${id}"\nversion = "1.0"\n`,
    );
    await fs.writeFile(path.join(dir, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n', { mode: 0o755 });
    await fs.writeFile(path.join(dir, 'bin', 'build'), `#!/usr/bin/env bash\n${body}\n`, { mode: 0o755 });
    return dir;
  }

  async function failure(p: Promise<unknown>): Promise<KilnError> {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof KilnError, String(e));
      return e;
    }
    assert.fail('the build was expected to fail');
  }

  test('a hung buildpack is stopped at --timeout: exit 51, one line, previous image kept', async () => {
    const app = await w.app('slow', 'first');
    const first = await w.build(app, 'e2e-slow');
    const slow = await buildpack('acme/slow', 'echo "working"; sleep 600');
    const t0 = Date.now();
    const e = await failure(
      w.build(app, 'e2e-slow', { buildpacks: ['e2e/runtime', slow], deadline: Deadline.after(4000) }),
    );
    assert.equal(exitCodeOf(e), ExitCode.BuildFailed);
    assert.equal(
      e.message,
      'buildpack acme/slow@1.0 (build) was stopped after the 4s build timeout (--timeout)',
    );
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(await w.store.digestOf('e2e-slow'), first.digest);
    assert.deepEqual(await fs.readdir(path.join(w.root, 'tmp')), []);
  });

  test('a disk filler is stopped at the disk budget: exit 51, naming the budget and the flag', async () => {
    const app = await w.app('filler', 'first');
    const filler = await buildpack('acme/filler', 'cat /dev/zero > "$1/fill"');
    const e = await failure(
      w.build(app, 'e2e-filler', {
        buildpacks: [filler],
        limits: { diskBytes: 64 << 20 },
      }),
    );
    assert.equal(exitCodeOf(e), ExitCode.BuildFailed);
    assert.match(
      e.message,
      /^buildpack acme\/filler@1\.0 \(build\) was stopped: the build's disk budget of 64 MiB for .* was exceeded .*--disk-budget/,
    );
    assert.deepEqual(await fs.readdir(path.join(w.root, 'tmp')), []);
  });

  test('the deadline spans the platform phases: passed during analyze, the build ends there (exit 32)', async () => {
    const app = await w.app('late', 'first');
    const e = await failure(w.build(app, 'e2e-late', { deadline: Deadline.after(1) }));
    assert.equal(exitCodeOf(e), ExitCode.AnalyzeError);
    assert.match(
      e.message,
      /^the build was stopped during analyze: the 1ms build timeout \(--timeout\) passed; raise it with --timeout/,
    );
  });
});
