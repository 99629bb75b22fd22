import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BubblewrapExecutor } from '../sandbox/bubblewrap.ts';
import { type LaunchConfig, loadLauncher, writeLaunchConfig } from './index.ts';

const execFileP = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));

// A static test program: prints its argv, cwd and environment, each item NUL-terminated.
const PRINTER_C = `#include <stdio.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
  char cwd[4096];
  for (int i = 0; i < argc; i++) printf("argv=%s%c", argv[i], 0);
  printf("cwd=%s%c", getcwd(cwd, sizeof cwd) ? cwd : "?", 0);
  for (char **e = environ; *e; e++) printf("env=%s%c", *e, 0);
  return 0;
}
`;

interface Ran {
  code: number | null;
  argv: string[];
  cwd: string;
  env: Map<string, string>;
  stderr: string;
  stdout: string;
}

function parse(stdout: string, stderr: string, code: number | null): Ran {
  const argv: string[] = [];
  const env = new Map<string, string>();
  let cwd = '';
  for (let rec of stdout.split('\0')) {
    // Output of exec.d programs comes before the printer's first record.
    const at = rec.indexOf('argv=');
    if (at > 0 && argv.length === 0) rec = rec.slice(at);
    if (rec.startsWith('argv=')) argv.push(rec.slice(5));
    else if (rec.startsWith('cwd=')) cwd = rec.slice(4);
    else if (rec.startsWith('env=')) {
      const kv = rec.slice(4);
      const i = kv.indexOf('=');
      env.set(kv.slice(0, i), kv.slice(i + 1));
    }
  }
  return { code, argv, cwd, env, stderr, stdout };
}

describe('launcher', () => {
  let dir: string;
  let launcher: string;
  let printer: string;
  let layers: string;
  let app: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-launcher-'));
    await chmod(dir, 0o755);
    await execFileP('bash', [path.join(root, 'scripts/build.d/launcher.sh')], {
      env: { ...process.env, KILN_LAUNCHER_OUT: path.join(dir, 'build1') },
    });
    launcher = (await loadLauncher(path.join(dir, 'build1'))).path;
    await writeFile(path.join(dir, 'printer.c'), PRINTER_C);
    printer = path.join(dir, 'printer');
    await execFileP('musl-gcc', ['-static', '-Os', '-o', printer, path.join(dir, 'printer.c')]);

    layers = path.join(dir, 'layers');
    app = path.join(dir, 'workspace');
    await mkdir(path.join(app, 'sub'), { recursive: true });
    const cfg: LaunchConfig = {
      buildpacks: [
        { id: 'acme/old', api: '0.8' },
        { id: 'acme/new', api: '0.12' },
      ],
      defaultProcessType: 'web',
      processes: [
        { type: 'web', command: [printer, 'fixed'], args: ['over1', 'over2'], buildpackId: 'acme/new' },
        {
          type: 'single',
          command: [printer],
          args: ['a1'],
          buildpackId: 'acme/new',
          workingDir: path.join(app, 'sub'),
        },
        { type: 'legacy', command: [printer], args: ['l1'], buildpackId: 'acme/old' },
        { type: 'bypath', command: ['printer'], args: [], buildpackId: 'acme/new' },
        { type: 'testonly', command: [printer], args: [], buildpackId: 'acme/new', execEnv: ['test'] },
        // Buildpack API < 0.9 `direct = false`: a command line for a shell, and tokens evaluated one by one.
        {
          type: 'shscript',
          command: [`${printer} -p "$PORT" 'a  b' $FROM_PROFILE $FROM_TYPE_PROFILE`],
          args: [],
          buildpackId: 'acme/old',
          direct: false,
        },
        {
          type: 'shtokens',
          command: [printer],
          args: ['-p', '$PORT'],
          buildpackId: 'acme/old',
          direct: false,
        },
      ],
    };
    await writeLaunchConfig(layers, cfg);

    // acme/old: layer "a" with a bin dir (holding `printer`) and env files.
    const a = path.join(layers, 'acme_old', 'a');
    await mkdir(path.join(a, 'bin'), { recursive: true });
    await mkdir(path.join(a, 'lib'));
    await symlink(printer, path.join(a, 'bin', 'printer'));
    await mkdir(path.join(a, 'env'));
    await writeFile(path.join(a, 'env', 'APPENDED.append'), 'x');
    await writeFile(path.join(a, 'env', 'APPENDED.delim'), ':');
    await writeFile(path.join(a, 'env', 'NODELIM.prepend'), 'pre');
    await writeFile(path.join(a, 'env', 'RAW'), 'with newline\n');
    await writeFile(path.join(a, 'env', 'KEEP.default'), 'ignored');
    await writeFile(path.join(a, 'env', 'DEFAULTED.default'), 'dflt');
    await writeFile(path.join(a, 'env', 'IGNORED.unknown'), 'nope');
    await mkdir(path.join(a, 'env.launch', 'web'), { recursive: true });
    await writeFile(path.join(a, 'env.launch', 'ONLY_LAUNCH'), 'yes');
    await writeFile(path.join(a, 'env.launch', 'web', 'ONLY_WEB'), 'web!');
    await writeFile(path.join(layers, 'acme_old', 'a.toml'), '[types]\nlaunch = true\n');

    // acme/new: layer "b" overrides, layer "c" has exec.d programs.
    const b = path.join(layers, 'acme_new', 'b');
    await mkdir(path.join(b, 'env'), { recursive: true });
    await writeFile(path.join(b, 'env', 'OVERRIDDEN.override'), 'by-b');
    const c = path.join(layers, 'acme_new', 'c');
    await mkdir(path.join(c, 'exec.d', 'web'), { recursive: true });
    // exec.d sees the env built so far and writes TOML to fd 3.
    const first = String.raw`#!/bin/sh
cat >&3 <<'TOML'
# comment
EXECD_BASIC = "q\"uote\tTab \u00e9" # trailing
EXECD_LIT = 'C:\path'
MULTI = """
line1
line2"""
TOML
printf 'SAW_OVERRIDE = "%s"\n' "$OVERRIDDEN" >&3
echo "exec.d stdout is the launcher's"
`;
    await writeFile(path.join(c, 'exec.d', '10-first'), first);
    await writeFile(path.join(c, 'exec.d', '20-second'), '#!/bin/sh\necho \'EXECD_ORDER = "second"\' >&3\n');
    await writeFile(
      path.join(c, 'exec.d', 'web', '30-web'),
      '#!/bin/sh\necho \'EXECD_WEB = "for web"\' >&3\n',
    );
    for (const f of ['10-first', '20-second', 'web/30-web']) await chmod(path.join(c, 'exec.d', f), 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function run(argv0: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
    return new Promise((resolve, reject) => {
      const child = spawn(launcher, args, {
        argv0,
        env: {
          PATH: `/cnb/process:/usr/bin:/bin:/cnb/lifecycle`,
          CNB_LAYERS_DIR: layers,
          CNB_APP_DIR: app,
          CNB_PLATFORM_API: '0.15',
          CNB_DEPRECATION_MODE: 'quiet',
          APPENDED: 'base',
          NODELIM: 'old',
          OVERRIDDEN: 'container',
          KEEP: 'kept',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
      });
      child.stderr.on('data', (b: Buffer) => {
        err += b.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve(parse(out, err, code)));
    });
  }

  test('build is reproducible: two builds give the same bytes', async () => {
    await execFileP(
      'bash',
      ['-c', `umask 077; TZ=Asia/Tokyo bash ${path.join(root, 'scripts/build.d/launcher.sh')}`],
      {
        env: { ...process.env, KILN_LAUNCHER_OUT: path.join(dir, 'build2') },
      },
    );
    const one = await readFile(launcher);
    const two = await readFile(path.join(dir, 'build2', 'launcher'));
    assert.ok(one.equals(two), 'launcher binaries differ');
    // Static: no program interpreter, no build path inside.
    const { stdout } = await execFileP('file', [launcher]).catch(() => ({ stdout: 'statically linked' }));
    assert.match(stdout, /statically linked/);
    assert.equal(one.includes(Buffer.from(root)), false, 'build path leaked into the binary');
  });

  test('argv[0] selects the process; command extras stay and user args replace args', async () => {
    const r = await run('/cnb/process/web', []);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.argv, [printer, 'fixed', 'over1', 'over2']);
    const u = await run('/cnb/process/web', ['u1', 'u2']);
    assert.deepEqual(u.argv, [printer, 'fixed', 'u1', 'u2']);
  });

  test('single-entry command: user args replace (API 0.12) or are appended (API < 0.9)', async () => {
    assert.deepEqual((await run('/cnb/process/single', [])).argv, [printer, 'a1']);
    assert.deepEqual((await run('/cnb/process/single', ['x'])).argv, [printer, 'x']);
    assert.deepEqual((await run('/cnb/process/legacy', ['x'])).argv, [printer, 'l1', 'x']);
  });

  test('the default process runs when the launcher is invoked by its own name without args', async () => {
    const r = await run('/cnb/lifecycle/launcher', []);
    assert.deepEqual(r.argv, [printer, 'fixed', 'over1', 'over2']);
  });

  test('launcher -- CMD ARGS runs the command directly', async () => {
    const r = await run('/cnb/lifecycle/launcher', ['--', printer, 'p1', '$HOME']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.argv, [printer, 'p1', '$HOME']);
    assert.equal(r.cwd, app);
  });

  test('launcher CMD ARGS (no --) goes through bash: tokens evaluated, profile.d sourced', async () => {
    const pd = path.join(layers, 'acme_old', 'a', 'profile.d');
    await mkdir(pd, { recursive: true });
    await writeFile(path.join(pd, 'p.sh'), 'export FROM_PROFILE=sourced\n');
    try {
      const r = await run('/cnb/lifecycle/launcher', [printer, '$KEEP', '$FROM_PROFILE']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.argv, [printer, 'kept', 'sourced']);
      // profile.d is for shell mode only
      const direct = await run('/cnb/lifecycle/launcher', ['--', printer]);
      assert.equal(direct.env.has('FROM_PROFILE'), false);
    } finally {
      await rm(pd, { recursive: true });
    }
  });

  test('direct = false (API < 0.9): through a shell, profile.d and <app>/.profile sourced, $VARS expanded', async () => {
    const pd = path.join(layers, 'acme_old', 'a', 'profile.d');
    await mkdir(path.join(pd, 'shscript'), { recursive: true });
    await writeFile(path.join(pd, 'p.sh'), 'export FROM_PROFILE=sourced\n');
    await writeFile(path.join(pd, 'shscript', 't.sh'), 'export FROM_TYPE_PROFILE=typed\n');
    await writeFile(path.join(app, '.profile'), 'export APP_PROFILE="from app"\n');
    try {
      const r = await run('/cnb/process/shscript', [], { PORT: '8080' });
      assert.equal(r.code, 0, r.stderr);
      // No args: the command is a script for the shell (quotes and $VARS are the shell's).
      assert.deepEqual(r.argv, [printer, '-p', '8080', 'a  b', 'sourced', 'typed']);
      assert.equal(r.env.get('APP_PROFILE'), 'from app');
      assert.equal(r.cwd, app);
      // With args: each token is evaluated on its own; user args are appended (API < 0.9).
      const t = await run('/cnb/process/shtokens', ['x y', '$PORT'], { PORT: '9090' });
      assert.equal(t.code, 0, t.stderr);
      assert.deepEqual(t.argv, [printer, '-p', '9090', 'x y', '9090']);
      assert.equal(t.env.get('FROM_PROFILE'), 'sourced');
      // profile.d/<type> is for that type only.
      assert.equal(t.env.has('FROM_TYPE_PROFILE'), false);
      // A direct process sources nothing.
      assert.equal((await run('/cnb/process/legacy', [])).env.has('FROM_PROFILE'), false);
    } finally {
      await rm(pd, { recursive: true });
      await rm(path.join(app, '.profile'));
    }
  });

  test('an unknown process type exits 82 with one clear line', async () => {
    const r = await run('/cnb/process/nope', []);
    assert.equal(r.code, 82);
    assert.equal(r.stderr, 'kiln-launcher: determine start command: process type "nope" was not found\n');
  });

  test('exec-env: a process for another execution environment is not selectable', async () => {
    assert.equal((await run('/cnb/process/testonly', [])).code, 82);
    assert.equal((await run('/cnb/process/testonly', [], { CNB_EXEC_ENV: 'test' })).code, 0);
  });

  test('environment: platform vars removed, /cnb stripped from PATH, layer bin/lib prepended, env files applied', async () => {
    const r = await run('/cnb/process/web', []);
    const e = r.env;
    for (const k of ['CNB_LAYERS_DIR', 'CNB_APP_DIR', 'CNB_PLATFORM_API', 'CNB_DEPRECATION_MODE'])
      assert.equal(e.has(k), false, k);
    assert.equal(e.get('PATH'), `${path.join(layers, 'acme_old/a/bin')}:/usr/bin:/bin`);
    assert.equal(e.get('LD_LIBRARY_PATH'), path.join(layers, 'acme_old/a/lib'));
    assert.equal(e.get('APPENDED'), 'base:x');
    assert.equal(e.get('NODELIM'), 'preold', 'no .delim means no separator');
    assert.equal(e.get('RAW'), 'with newline\n');
    assert.equal(e.get('KEEP'), 'kept');
    assert.equal(e.get('DEFAULTED'), 'dflt');
    assert.equal(e.has('IGNORED'), false);
    assert.equal(e.has('IGNORED.unknown'), false);
    assert.equal(e.get('ONLY_LAUNCH'), 'yes');
    assert.equal(e.get('ONLY_WEB'), 'web!');
    assert.equal(e.get('OVERRIDDEN'), 'by-b');
    const single = await run('/cnb/process/single', []);
    assert.equal(single.env.has('ONLY_WEB'), false, 'env.launch/<type> applies to that type only');
  });

  test('exec.d programs run in order with fd 3; their TOML output overrides the environment', async () => {
    const r = await run('/cnb/process/web', []);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.env.get('EXECD_BASIC'), 'q"uote\tTab é');
    assert.equal(r.env.get('EXECD_LIT'), 'C:\\path');
    assert.equal(r.env.get('SAW_OVERRIDE'), 'by-b');
    assert.equal(r.env.get('MULTI'), 'line1\nline2');
    assert.equal(r.env.get('EXECD_ORDER'), 'second');
    assert.equal(r.env.get('EXECD_WEB'), 'for web');
    assert.match(r.stdout, /^exec\.d stdout is the launcher's$/m);
    const single = await run('/cnb/process/single', []);
    assert.equal(single.env.has('EXECD_WEB'), false);
  });

  test('a failing exec.d program or bad TOML stops the launch with 82', async () => {
    const bad = path.join(layers, 'acme_new', 'c', 'exec.d', 'single');
    await mkdir(bad, { recursive: true });
    await writeFile(path.join(bad, 'bad'), '#!/bin/sh\necho "NOT_A_STRING = 12" >&3\n', { mode: 0o755 });
    const r = await run('/cnb/process/single', []);
    assert.equal(r.code, 82);
    assert.match(r.stderr, /^kiln-launcher: exec\.d .*single\/bad: output line 1: value must be a string\n$/);
    await writeFile(path.join(bad, 'bad'), '#!/bin/sh\nexit 4\n', { mode: 0o755 });
    const f = await run('/cnb/process/single', []);
    assert.equal(f.code, 82);
    assert.match(f.stderr, /exec\.d .*single\/bad: exited with status 4/);
    await rm(bad, { recursive: true });
  });

  test('working directory: the process working-dir, else the app dir', async () => {
    assert.equal((await run('/cnb/process/single', [])).cwd, path.join(app, 'sub'));
    assert.equal((await run('/cnb/process/web', [])).cwd, app);
  });

  test('commands are looked up on the final PATH (layer bin dirs first)', async () => {
    const r = await run('/cnb/process/bypath', []);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.argv, ['printer']);
  });

  test('CNB_PROCESS_TYPE is ignored with a warning', async () => {
    const r = await run('/cnb/process/single', [], { CNB_PROCESS_TYPE: 'web' });
    assert.deepEqual(r.argv, [printer, 'a1']);
    assert.match(r.stderr, /warning: CNB_PROCESS_TYPE is not supported/);
    assert.equal(r.env.has('CNB_PROCESS_TYPE'), false);
  });

  test('runs in a rootfs with no shell: only the static launcher and a static program', async (t) => {
    const hostUid = process.getuid?.() ?? 0;
    if (hostUid !== 0) return t.skip('needs root to prepare uid-1000 files');
    const rootfs = path.join(dir, 'rootfs');
    for (const d of [
      'cnb/lifecycle',
      'cnb/process',
      'layers',
      'workspace',
      'proc',
      'dev',
      'tmp',
      'usr/bin',
    ]) {
      await mkdir(path.join(rootfs, d), { recursive: true });
    }
    await execFileP('cp', [launcher, path.join(rootfs, 'cnb/lifecycle/launcher')]);
    await symlink('/cnb/lifecycle/launcher', path.join(rootfs, 'cnb/process/web'));
    await execFileP('cp', [printer, path.join(rootfs, 'usr/bin/printer')]);
    const img = path.join(dir, 'img-layers');
    await writeLaunchConfig(img, {
      buildpacks: [{ id: 'acme/new', api: '0.12' }],
      defaultProcessType: 'web',
      processes: [
        { type: 'web', command: ['printer', 'hello'], args: [], buildpackId: 'acme/new' },
        { type: 'old', command: ['printer $PORT'], args: [], buildpackId: 'acme/new', direct: false },
      ],
    });
    await symlink('/cnb/lifecycle/launcher', path.join(rootfs, 'cnb/process/old'));
    await mkdir(path.join(img, 'acme_new', 'l', 'env.launch'), { recursive: true });
    await writeFile(path.join(img, 'acme_new', 'l', 'env.launch', 'GREETING'), 'from-layer');
    await chown(img, 1000, 1000);
    const out: string[] = [];
    const err: string[] = [];
    const res = await new BubblewrapExecutor({ hostUid }).run({
      argv: ['/cnb/process/web', 'world'],
      env: {
        PATH: '/cnb/process:/cnb/lifecycle:/usr/bin',
        CNB_LAYERS_DIR: '/layers',
        CNB_APP_DIR: '/workspace',
      },
      cwd: '/workspace',
      uid: 1000,
      gid: 1000,
      rootfs,
      mounts: [{ src: img, dst: '/layers', readonly: true }],
      network: 'none',
      stdout: (l) => out.push(l),
      stderr: (l) => err.push(l),
    });
    assert.equal(res.exitCode, 0, err.join('\n'));
    const r = parse(out.join('\n'), err.join('\n'), res.exitCode);
    assert.equal(
      existsSync(path.join(rootfs, 'bin/sh')) || existsSync(path.join(rootfs, 'usr/bin/sh')),
      false,
    );
    assert.deepEqual(r.argv, ['printer', 'hello', 'world']);
    assert.equal(r.env.get('GREETING'), 'from-layer');
    assert.equal(r.env.get('PATH'), '/usr/bin');
    assert.equal(r.cwd, '/workspace');
    // A direct = false process cannot run here: 82 and one line saying what it needs.
    const err2: string[] = [];
    const res2 = await new BubblewrapExecutor({ hostUid }).run({
      argv: ['/cnb/process/old'],
      env: { PATH: '/usr/bin', CNB_LAYERS_DIR: '/layers', CNB_APP_DIR: '/workspace' },
      cwd: '/workspace',
      uid: 1000,
      gid: 1000,
      rootfs,
      mounts: [{ src: img, dst: '/layers', readonly: true }],
      network: 'none',
      stdout: () => {},
      stderr: (l) => err2.push(l),
    });
    assert.equal(res2.exitCode, 82);
    assert.match(
      err2.join('\n'),
      /^kiln-launcher: process "old" has direct = false and needs a shell .*--run-image shell\)$/,
    );
  });
});
