// A hostile app directory whose *parent directories* are swapped for links to a host directory
// while kiln (root) copies it into the build's workspace. The host directory holds files with the
// app's own names and a root-only canary as content; no copy may ever contain it. Once with the
// swap injected at the worst moment (after the directory was listed, before it is entered), and
// once with a real racing process swapping directories in a loop while kiln copies (bounded time).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KilnError } from '../../src/internal/errors.ts';
import { copyAppSource } from '../../src/platform/app-source.ts';
import { type SourceFilter, sourceFilter } from '../../src/platform/source-filter.ts';

const all = sourceFilter(undefined, undefined);
const FILES = 50;

/** Every regular file under `dir` (links not followed) whose content includes `secret`. */
async function leaks(dir: string, secret: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string) => {
    for (const name of await readdir(d).catch(() => [] as string[])) {
      const p = path.join(d, name);
      const st = await lstat(p);
      if (st.isDirectory()) await visit(p);
      else if (st.isFile() && (await readFile(p, 'utf8')).includes(secret)) out.push(p);
    }
  };
  await visit(dir);
  return out;
}

describe('app directory: parent swapped for a link mid-copy', () => {
  let tmp: string;
  let secret: string;
  /** A host directory shaped like the app's `a/sub`, every file holding the canary. */
  let hostDir: string;
  before(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'kiln-app-race-'));
    secret = `KILN-APP-RACE-CANARY-${randomBytes(12).toString('hex')}`;
    hostDir = path.join(tmp, 'host');
    await mkdir(path.join(hostDir, 'sub'), { recursive: true });
    for (let i = 0; i < FILES; i++) {
      await writeFile(path.join(hostDir, 'sub', `f${i}`), secret);
      await chmod(path.join(hostDir, 'sub', `f${i}`), 0o600);
    }
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  async function makeApp(): Promise<string> {
    const app = await mkdtemp(path.join(tmp, 'app-'));
    await mkdir(path.join(app, 'a', 'sub'), { recursive: true });
    for (let i = 0; i < FILES; i++) await writeFile(path.join(app, 'a', 'sub', `f${i}`), 'ordinary');
    return app;
  }

  test('a directory swapped for a link after it was listed is refused in one line, never entered', async () => {
    const app = await makeApp();
    const dst = `${app}-out`;
    // The filter runs after `a` was listed (lstat) and before the copy enters it.
    const racing: SourceFilter = {
      mode: 'all',
      mayContain: () => true,
      includes(rel, isDir) {
        if (rel === 'a' && isDir) {
          execFileSync('mv', [path.join(app, 'a'), path.join(app, 'a.aside')]);
          execFileSync('ln', ['-s', hostDir, path.join(app, 'a')]);
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
      /^app directory: "a" changed while it was copied( \(\w+\))?: expected the directory listed$/,
    );
    assert.deepEqual(await leaks(dst, secret), []);
  });

  test('a process swapping parent directories for links in a loop never gets host content copied', async (t) => {
    const app = await makeApp();
    // Swaps app/a for a link to the host directory and back (each for about 1 ms), until killed.
    const swapper = spawn(
      'python3',
      [
        '-c',
        `import os, sys, time
app, host = sys.argv[1], sys.argv[2]
a, aside = os.path.join(app, 'a'), os.path.join(app, 'a.real')
while True:
    os.rename(a, aside)
    os.symlink(host, a)
    time.sleep(0.001)
    os.unlink(a)
    os.rename(aside, a)
    time.sleep(0.001)`,
        app,
        hostDir,
      ],
      { stdio: 'ignore' },
    );
    const stopped = new Promise((r) => swapper.once('exit', r));
    let copies = 0;
    let refused = 0;
    let completed = 0;
    const found: string[] = [];
    const odd: string[] = [];
    const deadline = Date.now() + 6000;
    try {
      while (Date.now() < deadline && copies < 300) {
        const dst = path.join(tmp, `race-out-${copies++}`);
        await copyAppSource(app, dst, all).then(
          () => completed++,
          (e: unknown) => {
            refused++;
            if (
              !(
                e instanceof KilnError &&
                /^app directory: "[^"]+" changed while it was copied/.test(e.message)
              )
            )
              odd.push(String(e));
          },
        );
        found.push(...(await leaks(dst, secret)));
        await rm(dst, { recursive: true, force: true });
      }
    } finally {
      swapper.kill('SIGKILL');
      await stopped;
    }
    t.diagnostic(`${copies} copies: ${completed} completed, ${refused} refused`);
    assert.deepEqual(found, [], `host content copied in ${found.length} files`);
    // Every refusal is kiln's one line, not a raw errno from a path that vanished.
    assert.deepEqual(odd, []);
    // The race ran: copies saw the swapped tree (refused, or a link copied as a link) and others
    // completed.
    assert.ok(copies >= 10, `${copies} copies`);
    assert.ok(refused + completed === copies);
  });
});
