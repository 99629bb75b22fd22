// The platform spec's exit-code table, each code reached through a real failure: real buildpacks
// in the sandbox, a real registry behind a proxy that fails the manifest PUT, a full tmpfs as the
// output layout, a corrupt file where kiln reads one, the CLI run in process. Each failure's code
// is what exitCodeOf (the CLI's one table) gives the error, and the export step ends with 62
// whether the registry or the disk failed inside it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf, ProcessExit } from '../../src/cli/exit-codes.ts';
import { inPhase, KilnError, UsageError } from '../../src/internal/errors.ts';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import { BuildpackFailure } from '../../src/lifecycle/errors.ts';
import { appendLayers } from '../../src/oci/mutate.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';
import { runMain } from '../helpers/cli.ts';
import { type ProxyHandle, type RegistryHandle, startProxy, startRegistry } from '../helpers/registry.ts';
import { fileEntry } from '../helpers/tar-entries.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

describe('exit codes of the platform spec, from real failures', { skip: !asRoot && 'needs root' }, () => {
  let e: E2E;
  let reg: RegistryHandle;
  let proxy: ProxyHandle;
  let n = 0;
  let env: Record<string, string | undefined>;
  let home: string | undefined;
  before(async () => {
    [e, reg] = await Promise.all([makeE2E(), startRegistry()]);
    proxy = await startProxy(reg.host);
    // The CLI's store (KILN_HOME/images) is the fixture's: bind-mounted, since kiln refuses a
    // store that is a symbolic link (another user could point it elsewhere).
    home = path.join(e.root, 'kiln-home');
    await mkdir(path.join(home, 'images'), { recursive: true });
    execFileSync('mount', ['--bind', e.store.dir, path.join(home, 'images')]);
    env = { HOME: home, KILN_HOME: home, PATH: process.env.PATH };
  });
  after(async () => {
    if (home) execFileSync('umount', [path.join(home, 'images')]);
    await proxy?.stop();
    await reg?.stop();
    await e?.cleanup();
  });

  /** A buildpack dir: `api`, and the bodies of bin/detect and bin/build. */
  async function buildpack(
    id: string,
    o: { api?: string; detect?: string; build?: string },
  ): Promise<string> {
    const d = path.join(e.root, 'bps', String(n++));
    await mkdir(path.join(d, 'bin'), { recursive: true });
    await writeFile(
      path.join(d, 'buildpack.toml'),
      `api = "${o.api ?? '0.12'}"\n[buildpack]\nid = "${id}"\nversion = "1"\n`,
    );
    await writeFile(path.join(d, 'bin', 'detect'), `#!/usr/bin/env bash\n${o.detect ?? 'exit 0'}\n`);
    await writeFile(path.join(d, 'bin', 'build'), `#!/usr/bin/env bash\n${o.build ?? 'exit 0'}\n`);
    for (const b of ['detect', 'build']) await chmod(path.join(d, 'bin', b), 0o755);
    return d;
  }

  /** The error a build ends with (it must fail). */
  async function failure(p: Promise<unknown>): Promise<KilnError> {
    const err = await p.then(
      () => assert.fail('expected the build to fail'),
      (x: unknown) => x,
    );
    assert.ok(err instanceof KilnError, `a KilnError: ${String(err)}`);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return err;
  }

  test('a bad flag: 3', async () => {
    const r = await runMain(['build', 'x', '--no-such-flag'], env);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /^ERROR: unknown option '--no-such-flag'/);
    const bad = await runMain(['build', 'x', '--cache-image', 'a', '--cache-dir', '/tmp/x'], env);
    assert.equal(bad.code, 3, bad.err);
  });

  test('an unsupported platform API: 11', async () => {
    const r = await runMain(['build', 'codes/api', '--path', e.root], { ...env, CNB_PLATFORM_API: '0.1' });
    assert.equal(r.code, 11, r.err);
    assert.match(r.err, /platform API 0\.1 is not supported/);
  });

  test('a buildpack declaring API 0.1: 12', async () => {
    const bp = await buildpack('codes/old', { api: '0.1' });
    const err = await failure(e.build(await e.app('old', 'x'), 'codes/old', { buildpacks: [bp] }));
    assert.match(err.message, /buildpack API 0\.1 is not supported/);
    assert.equal(exitCodeOf(err), 12);
  });

  test('no group passes detection: 20; a detect that errors: 21', async () => {
    const none = await buildpack('codes/none', { detect: 'exit 100' });
    const e20 = await failure(e.build(await e.app('none', 'x'), 'codes/none', { buildpacks: [none] }));
    assert.match(e20.message, /^no buildpack group passed detection: /);
    assert.equal(exitCodeOf(e20), 20);
    const broken = await buildpack('codes/broken', { detect: 'exit 7' });
    const e21 = await failure(e.build(await e.app('broken', 'x'), 'codes/broken', { buildpacks: [broken] }));
    assert.match(e21.message, /a buildpack failed with an error/);
    assert.equal(exitCodeOf(e21), 21);
  });

  test('a corrupt /cnb/run.toml in the builder is an error naming it, in analyze: 32', async () => {
    const layer = await writeLayer([fileEntry('cnb/run.toml', '[[images]\nimage = ')], {
      store: e.store.blobs,
    });
    const bad = appendLayers(e.builder, layer);
    const err = await failure(
      e.build(await e.app('runtoml', 'x'), 'codes/runtoml', {
        builder: { image: bad, name: 'codes/bad-builder' },
      }),
    );
    assert.match(err.message, /\/cnb\/run\.toml/);
    assert.doesNotMatch(err.message, /names no run image/, 'broken is not absent');
    assert.equal(err.phase, 'analyze');
    assert.equal(exitCodeOf(err), 32);
  });

  test('a corrupt cache.json at restore: 42', async () => {
    const app = await e.app('cache', 'x');
    await e.build(app, 'codes/cache');
    const file = path.join(e.root, 'cache', 'codes_cache', 'cache.json');
    await readFile(file); // the first build left one
    await writeFile(file, '{"layers": ');
    const err = await failure(e.build(app, 'codes/cache'));
    assert.match(err.message, /cache\.json: not a valid cache state .*--clear-cache$/);
    assert.equal(exitCodeOf(err), 42);
    // --clear-cache does not read it: the way out the message names works.
    await e.build(app, 'codes/cache', { clearCache: true });
  });

  test('a buildpack exiting 1: 51; a limit hit is 51 too', async () => {
    const bp = await buildpack('codes/fails', { build: 'echo no >&2; exit 1' });
    const err = await failure(e.build(await e.app('fails', 'x'), 'codes/fails', { buildpacks: [bp] }));
    assert.match(err.message, /^buildpack codes\/fails@1 failed: bin\/build exited with status 1/);
    assert.equal(exitCodeOf(err), 51);
  });

  test('the export step ends with 62 whether the registry (500 on the manifest PUT) or the disk failed', async (t) => {
    const app = await e.app('export', 'exported');

    proxy.setFault((r) =>
      r.method === 'PUT' && r.path.includes('/manifests/') ? { status: 500, body: 'boom' } : undefined,
    );
    const pushed = await failure(e.build(app, 'codes/pushed', { dest: `${proxy.host}/codes/pushed:v1` }));
    proxy.setFault(undefined);
    assert.match(pushed.message, /500/);
    assert.equal(pushed.phase, 'export');
    assert.equal(exitCodeOf(pushed), 62, pushed.message);

    // The output layout on a 64 KiB tmpfs: the layers do not fit.
    const small = path.join(e.root, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small]);
    t.after(() => execFileSync('umount', ['-l', small]));
    const full = await failure(e.build(app, 'codes/full', { dest: `oci:${small}/layout:app` }));
    assert.match(full.message, /ENOSPC/);
    assert.equal(full.phase, 'export');
    assert.equal(exitCodeOf(full), 62, full.message);
  });

  test('kiln rebase of an image that is no app image: 72', async () => {
    const r = await runMain(['rebase', 'e2e/run'], env);
    assert.equal(r.code, 72, r.err);
    assert.match(r.err, /cannot rebase .*not a buildpacks app image/);
    // A usage error in the same command stays a usage error.
    const u = await runMain(['rebase', `oci:${e.root}/nolayout:x`, '--publish'], env);
    assert.equal(u.code, 3, u.err);
  });

  test('kiln run: the launcher failing is 82, and so is kiln failing to launch', async () => {
    // The launcher cannot exec the process's command: it exits 82 itself, and kiln run with it.
    const bp = await buildpack('codes/badlaunch', {
      build:
        'printf \'[[processes]]\\ntype = "web"\\ncommand = ["/no/such/program"]\\ndefault = true\\n\' > "$1/launch.toml"',
    });
    // The launch check would refuse this image at export; the point here is the launcher failing.
    await e.build(await e.app('badlaunch', 'x'), 'codes/badlaunch', { buildpacks: [bp], launchCheck: false });
    const r = await runMain(['run', 'codes/badlaunch'], env);
    assert.equal(r.code, 82, r.err);
    const missing = await runMain(['run', 'oci:/nonexistent/layout:x'], env);
    assert.equal(missing.code, 82, missing.err);
    assert.match(missing.err, /^ERROR: not an OCI image layout: /m);
  });
});

describe('the table itself', () => {
  test('what happened decides first, then the step, then 1; causes are followed', () => {
    const inExport = (e: unknown) => inPhase('export', e, 'export');
    assert.equal(exitCodeOf(new Error('x')), 1, 'outside any step');
    assert.equal(exitCodeOf(inExport(Object.assign(new Error('disk'), { code: 'ENOSPC' }))), 62);
    assert.equal(exitCodeOf(inExport(new KilnError('registry said 500'))), 62);
    assert.equal(exitCodeOf(inExport(new UsageError('--tag "x": bad'))), 3, 'a usage error stays one');
    assert.equal(exitCodeOf(new KilnError('wrapped', { cause: new UsageError('--flag') })), 3);
    assert.equal(exitCodeOf(new BuildpackFailure('bp failed', { buildpack: 'a@1', phase: 'build' })), 51);
    assert.equal(exitCodeOf(new BuildpackFailure('bp failed', { buildpack: 'a@1', phase: 'detect' })), 22);
    assert.equal(exitCodeOf(inPhase('build', new KilnError('a layer dir is a link'))), 52);
    assert.equal(exitCodeOf(new ProcessExit(7)), 7);
    // The prefix is added to foreign errors only; kiln's own keep their one line.
    assert.equal(inExport(new Error('EIO')).message, 'export: EIO');
    assert.equal(inExport(new KilnError('mine')).message, 'mine');
    assert.equal(new UsageError('--cache-image x: must be a registry reference').argument, '--cache-image');
  });

  test('no error is classified by its message text in src/', async () => {
    const src = path.resolve(import.meta.dirname, '../../src');
    const bad =
      /(\.test\(\s*(String\(\s*(e|err|error)\s*\)|\(?(e|err|error)( as \w+\))?\)?\.message))|((e|err|error)\)?\.message\.(includes|startsWith|match)\()/;
    const hits: string[] = [];
    for (const f of await readdir(src, { recursive: true })) {
      if (!f.endsWith('.ts') || f.endsWith('.test.ts')) continue;
      const lines = (await readFile(path.join(src, f), 'utf8')).split('\n');
      lines.forEach((l, i) => {
        if (bad.test(l)) hits.push(`src/${f}:${i + 1}: ${l.trim()}`);
      });
    }
    assert.deepEqual(hits, []);
  });
});
