// The launch-time dependency check through `kiln build`: a launch layer's binary that needs a
// library the run image lacks fails the export (exit 62) with one line naming the process, the
// file, the library and its Debian package; the same binary with its library next to it (RPATH
// $ORIGIN) builds and runs; a script process whose `#!` interpreter the shell-free run image lacks
// fails naming the flavour that has it; `--no-launch-check` warns and builds; every sample passes
// on the default run image.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kiln, kilnOk, prepareHome, ROOT } from './samples-harness.ts';

let tmp: string;

before(async () => {
  await prepareHome();
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-launch-check-'));
});
after(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** gcc runs the host's C compiler (the test's binaries are compiled here, then shipped by a buildpack). */
function gcc(args: readonly string[], cwd: string): void {
  execFileSync('gcc', [...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * toolBuildpack writes a buildpack that copies the app's `ship/` tree into a launch layer `tool`
 * and declares `web` running `tool/bin/<exe>` (found through the layer's bin dir on PATH).
 */
async function toolBuildpack(dir: string, exe: string): Promise<void> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(
    path.join(dir, 'buildpack.toml'),
    `api = "0.10"\n[buildpack]\nid = "test/${exe}"\nversion = "0.0.1"\n[[stacks]]\nid = "*"\n`,
  );
  await writeFile(path.join(dir, 'bin', 'detect'), '#!/bin/sh\nexit 0\n');
  await writeFile(
    path.join(dir, 'bin', 'build'),
    `#!/bin/sh
set -e
layers=$1
mkdir -p "$layers/tool"
cp -a ship/. "$layers/tool/"
printf '[types]\\nlaunch = true\\n' > "$layers/tool.toml"
printf '[[processes]]\\ntype = "web"\\ncommand = ["${exe}"]\\ndefault = true\\n' > "$layers/launch.toml"
`,
  );
  for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
}

/** appWith makes an app dir whose `ship/` holds what the tool buildpack puts in its layer. */
/** buildArgs is `kiln build IMAGE --path APP --buildpack BP --network none`, then `extra`. */
function buildArgs(image: string, app: string, bp: string, ...extra: string[]): string[] {
  return ['build', image, '--path', app, '--buildpack', bp, '--network', 'none', ...extra];
}

async function appWith(name: string, files: (ship: string) => Promise<void>): Promise<string> {
  const app = path.join(tmp, name);
  const ship = path.join(app, 'ship');
  await mkdir(path.join(ship, 'bin'), { recursive: true });
  await files(ship);
  return app;
}

const MAIN_C = `#include <stdio.h>
extern const char *fake_greeting(void);
int main(void) { printf("tool says %s\\n", fake_greeting()); return 0; }
`;
const LIB_C = 'const char *fake_greeting(void) { return "hello from the layer\'s own library"; }\n';

/** compileWithLib builds `bin/tool` linked against a library of the given soname, in `libDir`. */
async function compileWithLib(work: string, soname: string, ldflags: readonly string[]): Promise<string> {
  await mkdir(work, { recursive: true });
  await writeFile(path.join(work, 'main.c'), MAIN_C);
  await writeFile(path.join(work, 'lib.c'), LIB_C);
  gcc(['-shared', '-fPIC', `-Wl,-soname,${soname}`, '-o', soname, 'lib.c'], work);
  gcc(['-o', 'tool', 'main.c', `./${soname}`, ...ldflags], work);
  return work;
}

describe('launch check', () => {
  test('a launch layer binary needing a library the run image lacks fails the build with its Debian package', async () => {
    // libffi.so.8: in the build image (python3 brings libffi8), not in the shell-free run image.
    const work = await compileWithLib(path.join(tmp, 'ffi'), 'libffi.so.8', []);
    const app = await appWith('app-ffi', async (ship) => {
      await cp(path.join(work, 'tool'), path.join(ship, 'bin', 'tool'));
    });
    const bp = path.join(tmp, 'bp-ffi');
    await toolBuildpack(bp, 'tool');
    const res = await kiln(buildArgs('kiln-e2e-lc-ffi', app, bp));
    assert.equal(res.code, 62, res.stdout + res.stderr);
    const lines = (res.stdout + res.stderr).split('\n').filter((l) => /needs libffi\.so\.8/.test(l));
    assert.equal(lines.length, 1, res.stderr);
    assert.match(
      lines[0]!,
      /process "web": \/layers\/test_tool\/tool\/bin\/tool needs libffi\.so\.8, which the run image kiln\/stacks\/bookworm\/run lacks \(Debian package libffi8\)/,
    );
  });

  test('the same binary with its library found through RPATH $ORIGIN builds and runs', async () => {
    for (const [name, flags] of [
      ['runpath', ['-Wl,-rpath,$ORIGIN/../private', '-Wl,--enable-new-dtags']],
      ['rpath', ['-Wl,-rpath,$ORIGIN/../private', '-Wl,--disable-new-dtags']],
    ] as const) {
      const work = await compileWithLib(path.join(tmp, `own-${name}`), 'libkilnfake.so.1', flags);
      const app = await appWith(`app-own-${name}`, async (ship) => {
        await cp(path.join(work, 'tool'), path.join(ship, 'bin', 'tool'));
        await mkdir(path.join(ship, 'private'));
        await cp(path.join(work, 'libkilnfake.so.1'), path.join(ship, 'private', 'libkilnfake.so.1'));
      });
      const bp = path.join(tmp, `bp-own-${name}`);
      await toolBuildpack(bp, 'tool');
      const image = `kiln-e2e-lc-own-${name}`;
      const res = await kilnOk(['-v', ...buildArgs(image, app, bp)]);
      assert.match(res.stdout + res.stderr, /launch check: passed/);
      const run = await kiln(['run', image, '--network', 'none'], { timeoutMs: 60_000 });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /tool says hello from the layer's own library/);
    }
    // Without the library in the layer: the made-up library is named, with no package to offer.
    const work = path.join(tmp, 'own-runpath');
    const app = await appWith('app-own-missing', async (ship) => {
      await cp(path.join(work, 'tool'), path.join(ship, 'bin', 'tool'));
    });
    const bp = path.join(tmp, 'bp-own-missing');
    await toolBuildpack(bp, 'tool');
    const res = await kiln(buildArgs('kiln-e2e-lc-own-missing', app, bp));
    assert.equal(res.code, 62, res.stdout + res.stderr);
    assert.match(
      res.stderr + res.stdout,
      /process "web": \/layers\/test_tool\/tool\/bin\/tool needs libkilnfake\.so\.1, which the run image kiln\/stacks\/bookworm\/run lacks$/m,
    );
  });

  const scriptApp = async () =>
    appWith('app-script', async (ship) => {
      await writeFile(path.join(ship, 'bin', 'hello.sh'), '#!/bin/sh\necho "hello from sh"\n', {
        mode: 0o755,
      });
    });

  test('a script whose interpreter the shell-free run image lacks fails, naming the flavour that has it', async () => {
    const bp = path.join(tmp, 'bp-script');
    await toolBuildpack(bp, 'hello.sh');
    const res = await kiln(buildArgs('kiln-e2e-lc-script', await scriptApp(), bp));
    assert.equal(res.code, 62, res.stdout + res.stderr);
    assert.match(
      res.stderr + res.stdout,
      /process "web": \/layers\/test_hello\.sh\/tool\/bin\/hello\.sh needs \/bin\/sh, which the shell-free run image lacks; the "shell" flavour has it: --run-image shell \(Debian package dash\)/,
    );
    // On the shell flavour the same build passes the check.
    await kilnOk(buildArgs('kiln-e2e-lc-script-shell', await scriptApp(), bp, '--run-image', 'shell'));
  });

  test('--no-launch-check warns and builds', async () => {
    const bp = path.join(tmp, 'bp-script-nocheck');
    await toolBuildpack(bp, 'hello.sh');
    const res = await kilnOk(buildArgs('kiln-e2e-lc-nocheck', await scriptApp(), bp, '--no-launch-check'));
    const warnings = (res.stdout + res.stderr).split('\n').filter((l) => /--no-launch-check/.test(l));
    assert.equal(warnings.length, 1, res.stderr);
    assert.match(warnings[0]!, /Launch check skipped/);
  });

  test('a passed check is not reused once the app file a process runs changed', async () => {
    const app = path.join(tmp, 'app-static');
    await cp(path.join(ROOT, 'samples', 'static-binary'), app, { recursive: true });
    execFileSync('sh', [path.join(app, 'build.sh')]);
    const image = 'kiln-e2e-lc-static';
    const cacheDir = path.join(tmp, 'cache-static');
    await kilnOk(['build', image, '--path', app, '--cache-dir', cacheDir, '--network', 'none']);
    // The same process command, now a script for a shell the run image does not have.
    await writeFile(path.join(app, 'hello-server'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    const res = await kiln(['build', image, '--path', app, '--cache-dir', cacheDir, '--network', 'none']);
    assert.equal(res.code, 62, res.stdout + res.stderr);
    assert.match(
      res.stderr + res.stdout,
      /process "web": \/workspace\/hello-server needs \/bin\/sh, which the shell-free run image lacks/,
    );
  });

  test('every sample passes the check on the default run image', async () => {
    const samples = path.join(ROOT, 'samples');
    execFileSync('sh', [path.join(samples, 'static-binary', 'build.sh')]);
    for (const s of ['node-express', 'node-procfile', 'static-binary']) {
      const res = await kilnOk(['-v', 'build', `kiln-e2e-lc-sample-${s}`, '--path', path.join(samples, s)]);
      assert.match(res.stdout + res.stderr, /launch check: passed/, s);
    }
  });
});
