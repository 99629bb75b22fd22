// Spec-faithful launch of older buildpack APIs, proven by launching the built image with `kiln run`
// and with podman on the shell run-image flavour: Buildpack API 0.7 and 0.8 processes with
// `direct = false` run through a shell (a command line with `$PORT` expanded; args evaluated token
// by token), with profile.d (also profile.d/<type>) and <app>/.profile sourced; a 0.8 process with
// `direct = true`, and the processes of 0.9 and 0.10 (no `direct`), run directly, `$PORT` literal
// and no profile sourced. On the shell-free default run image such a build fails at export (62)
// saying to use --run-image shell. The public sample apps/bash-script runs on the shell flavour.
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Podman } from '../helpers/podman.ts';
import { kiln, kilnOk, podmanOnKilnStore, ROOT, storedImage } from './samples-harness.ts';

const IMAGE = 'kiln-e2e-old-apis';

let podman: Podman;
let podmanStore: string;
let tmp: string;
let app: string;
let buildpacks: string[];

/** oldBuildpack writes a bash buildpack of `api` whose build step is `build` (bash, $1 = its layers dir). */
async function oldBuildpack(name: string, api: string, build: string): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(
    path.join(dir, 'buildpack.toml'),
    `api = "${api}"\n[buildpack]\nid = "test/${name}"\nversion = "0.0.1"\n[[stacks]]\nid = "*"\n`,
  );
  await writeFile(path.join(dir, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n');
  await writeFile(
    path.join(dir, 'bin', 'build'),
    `#!/usr/bin/env bash\nset -euo pipefail\nlayers=$1\n${build}`,
  );
  for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
  return dir;
}

before(async () => {
  ({ podman, store: podmanStore } = await podmanOnKilnStore());
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-old-apis-'));
  app = path.join(tmp, 'app');
  await mkdir(app);
  await writeFile(path.join(app, '.profile'), 'export APP_PROFILE="from .profile"\n');
  buildpacks = [
    // API 0.7: command is a string, direct defaults to false: a command line for the shell, and a
    // launch layer with profile.d for every process.
    await oldBuildpack(
      'api07',
      '0.7',
      `mkdir -p "$layers/profile/profile.d"
echo 'export GREETING="hello from profile.d"' > "$layers/profile/profile.d/greeting.sh"
printf '[types]\\nlaunch = true\\n' > "$layers/profile.toml"
cat > "$layers/launch.toml" <<'TOML'
[[processes]]
type = "web07"
command = "echo api=0.7 port=$PORT greeting=\\"$GREETING\\" app=\\"$APP_PROFILE\\" 'two  spaces'"
TOML
`,
    ),
    // API 0.8: direct = false with args (each token evaluated), profile.d/<type>, and a direct one.
    await oldBuildpack(
      'api08',
      '0.8',
      `mkdir -p "$layers/typed/profile.d/web08"
echo 'export TYPED="only for web08"' > "$layers/typed/profile.d/web08/typed.sh"
printf '[types]\\nlaunch = true\\n' > "$layers/typed.toml"
cat > "$layers/launch.toml" <<'TOML'
[[processes]]
type = "web08"
command = "echo"
args = ["api=0.8", "port=$PORT", "greeting=$GREETING", "typed=$TYPED"]
direct = false

[[processes]]
type = "direct08"
command = "echo"
args = ["api=0.8", "port=$PORT"]
direct = true
TOML
`,
    ),
    // API 0.9: array commands, no direct: run directly, nothing sourced.
    await oldBuildpack(
      'api09',
      '0.9',
      `cat > "$layers/launch.toml" <<'TOML'
[[processes]]
type = "web09"
command = ["echo", "api=0.9"]
args = ["port=$PORT"]
TOML
`,
    ),
    await oldBuildpack(
      'api10',
      '0.10',
      `cat > "$layers/launch.toml" <<'TOML'
[[processes]]
type = "web10"
command = ["echo", "api=0.10"]
args = ["port=$PORT"]
default = true
TOML
`,
    ),
  ];
});
after(async () => {
  await podman?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const bpFlags = () => buildpacks.flatMap((b) => ['--buildpack', b]);

/** launch runs one process of IMAGE with kiln run and podman (PORT=8080) and returns both outputs. */
async function launch(type: string, args: readonly string[] = []): Promise<{ kiln: string; podman: string }> {
  const k = await kiln(
    ['run', IMAGE, '--network', 'none', '-e', 'PORT=8080', '--process', type, '--', ...args],
    {
      timeoutMs: 60_000,
    },
  );
  assert.equal(k.code, 0, k.stderr);
  const ref = `oci:${podmanStore}:docker.io/library/${IMAGE}:latest`;
  const p = await podman.run(ref, args, { entrypoint: type, env: { PORT: '8080' } });
  assert.equal(p.code, 0, p.stderr);
  return { kiln: k.stdout, podman: p.stdout };
}

describe('older buildpack APIs launch as the spec says', () => {
  test('the build on the shell flavour records direct per process', async () => {
    const res = await kilnOk(['build', IMAGE, '--path', app, '--run-image', 'shell', ...bpFlags()]);
    assert.match(res.stdout + res.stderr, /Run image \S+ \(flavour shell\)/);
    const cfg = await (await storedImage(IMAGE)).configFile();
    const build = JSON.parse(cfg.config!.Labels!['io.buildpacks.build.metadata']!) as {
      processes: { type: string; direct: boolean }[];
    };
    assert.deepEqual(Object.fromEntries(build.processes.map((p) => [p.type, p.direct])), {
      direct08: true,
      web07: false,
      web08: false,
      web09: true,
      web10: true,
    });
  });

  test('API 0.7: direct = false is a command line for the shell, profile.d and .profile sourced', async () => {
    const out = await launch('web07');
    const want = 'api=0.7 port=8080 greeting=hello from profile.d app=from .profile two  spaces\n';
    assert.equal(out.kiln, want);
    assert.equal(out.podman, want);
  });

  test('API 0.8: direct = false evaluates each token (user args appended); direct = true does not', async () => {
    const out = await launch('web08', ['user=$PORT']);
    const want = 'api=0.8 port=8080 greeting=hello from profile.d typed=only for web08 user=8080\n';
    assert.equal(out.kiln, want);
    assert.equal(out.podman, want);
    const direct = await launch('direct08');
    assert.equal(direct.kiln, 'api=0.8 port=$PORT\n');
    assert.equal(direct.podman, 'api=0.8 port=$PORT\n');
  });

  test('API 0.9: processes run directly ($PORT literal, no profile sourced)', async () => {
    const out = await launch('web09');
    assert.equal(out.kiln, 'api=0.9 port=$PORT\n');
    assert.equal(out.podman, 'api=0.9 port=$PORT\n');
  });

  test('API 0.10+: unchanged, direct; user args replace args', async () => {
    const out = await launch('web10', ['x']);
    assert.equal(out.kiln, 'api=0.10 x\n');
    assert.equal(out.podman, 'api=0.10 x\n');
  });

  test('on the shell-free default run image the build fails at export saying to use --run-image shell', async () => {
    const res = await kiln(['build', `${IMAGE}-default`, '--path', app, ...bpFlags()]);
    assert.equal(res.code, 62, res.stdout + res.stderr);
    assert.match(
      res.stderr,
      /process "(web|direct)0[78]": .*the shell-free run image (lacks|has it); the "shell" flavour has it: --run-image shell/,
    );
    assert.equal((await storedImage(`${IMAGE}-default`).catch(() => undefined)) === undefined, true);
  });

  test('apps/bash-script (public CNB sample) runs on the shell flavour with kiln run and podman', async () => {
    const sample = path.join(tmp, 'bash-script');
    await cp(path.join(ROOT, 'test', 'e2e', 'cnb-samples', 'bash-script'), sample, { recursive: true });
    const image = 'kiln-e2e-bash-script-shell';
    await kilnOk(['build', image, '--path', sample, '--run-image', 'shell']);
    const run = await kiln(['run', image, '--network', 'none'], { timeoutMs: 60_000 });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^=== bash-script app ===\n/);
    assert.match(run.stdout, / app\.sh\n/);
    const p = await podman.run(`oci:${podmanStore}:docker.io/library/${image}:latest`);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /^=== bash-script app ===\n/);
  });
});
