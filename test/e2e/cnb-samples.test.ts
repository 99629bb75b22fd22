// Buildpacks written for other CNB platforms work unmodified through `kiln build`.
// test/e2e/cnb-samples/ holds small bash buildpacks written for this test in the style of the
// buildpacks/samples repository (hello-world, hello-moon, hello-processes and the bash-script app
// with its inline buildpack; see ../shared/cnb-samples-notes.md): they read their inputs only from
// positional arguments ($2 in detect; $1, $2, $3 in build), as those samples do. The run image is
// the stack's build image, because these processes are bash scripts and the run image has no shell.

import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Podman } from '../helpers/podman.ts';
import { kiln, kilnOk, podmanOnKilnStore, ROOT, storedImage } from './samples-harness.ts';

const SAMPLES = path.join(ROOT, 'test', 'e2e', 'cnb-samples');
const RUN_IMAGE = 'kiln/stacks/bookworm/build';

let podman: Podman;
let podmanStore: string;
let tmp: string;

before(async () => {
  ({ podman, store: podmanStore } = await podmanOnKilnStore());
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-cnb-samples-'));
});
after(async () => {
  await podman?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const bp = (name: string) => path.join(SAMPLES, name);

async function labels(image: string): Promise<Record<string, string>> {
  return (await (await storedImage(image)).configFile()).config?.Labels ?? {};
}

describe('bash sample buildpacks run unmodified', () => {
  test('hello-world, hello-moon, hello-processes: positional args, platform env, plan metadata, a launch layer and a process', async () => {
    const app = path.join(tmp, 'any-app');
    await mkdir(app);
    await writeFile(path.join(app, 'index.txt'), 'these buildpacks pass detection on any app\n');
    const image = 'kiln-e2e-cnb-hello';
    const res = await kilnOk([
      'build',
      image,
      '--path',
      app,
      '--run-image',
      RUN_IMAGE,
      '--buildpack',
      bp('hello-world'),
      '--buildpack',
      bp('hello-moon'),
      '--buildpack',
      bp('hello-processes'),
      '--env',
      'HELLO_FROM=kiln',
    ]);
    const log = res.stdout + res.stderr;
    for (const p of ['ANALYZING', 'DETECTING', 'RESTORING', 'BUILDING', 'EXPORTING'])
      assert.match(log, new RegExp(`===> ${p}`));
    // hello-world: $1 is its layers dir, $2 the platform dir (env files loaded by the script), $3 its plan,
    // which holds both requires of some-world: its own and hello-moon's with metadata.
    assert.match(log, /env var: HELLO_FROM=kiln/);
    assert.match(log, /layers_dir: \/layers\/samples_hello-world\n/);
    assert.match(log, /world = "Earth-616"/);
    // hello-moon provided nothing, so its plan is empty; it still got its positional args.
    assert.match(log, /layers: \/layers\/samples_hello-moon platform: \/platform\n/);
    // A stable image name: a later run of this file reuses the layer from the previous image.
    assert.match(log, /(Adding|Reusing) layer 'samples\/hello-processes:sys-info'/);

    const l = await labels(image);
    const meta = JSON.parse(l['io.buildpacks.lifecycle.metadata']!) as {
      buildpacks: {
        key: string;
        version: string;
        layers: Record<string, { launch: boolean; sha: string }>;
      }[];
    };
    assert.deepEqual(
      meta.buildpacks.map((b) => `${b.key}@${b.version}`),
      ['samples/hello-world@0.0.2', 'samples/hello-moon@0.0.2', 'samples/hello-processes@0.0.1'],
    );
    assert.equal(meta.buildpacks[2]!.layers['sys-info']!.launch, true);
    const build = JSON.parse(l['io.buildpacks.build.metadata']!) as {
      processes: { type: string; command: string[]; buildpackID: string }[];
    };
    assert.deepEqual(
      build.processes.map((p) => [p.type, p.buildpackID, p.command]),
      [['sys-info', 'samples/hello-processes', ['/layers/samples_hello-processes/sys-info/sys-info.sh']]],
    );
    // No default process: the entrypoint is the bare launcher and a process is named to run one.
    const cfg = await (await storedImage(image)).configFile();
    assert.deepEqual(cfg.config?.Entrypoint, ['/cnb/lifecycle/launcher']);

    const run = await kilnOk(['run', image, '--process', 'sys-info', 'a', 'b']);
    assert.equal(run.stdout, 'sys-info: uid=1000 pwd=/workspace args=a b\n');
    // As the samples' README runs it with docker: the process type as the entrypoint, on PATH.
    const ref = `oci:${podmanStore}:docker.io/library/${image}:latest`;
    let pod = await podman.run(ref, ['c'], { user: '1000:1000', entrypoint: 'sys-info' });
    if (pod.code !== 0 && /no such exit code/.test(pod.stderr))
      pod = await podman.run(ref, ['c'], { user: '1000:1000', entrypoint: 'sys-info' });
    assert.equal(pod.code, 0, pod.stderr);
    assert.equal(pod.stdout, 'sys-info: uid=1000 pwd=/workspace args=c\n');
  });

  test('hello-moon alone requires some-world that nothing provides: detection fails with exit 20', async () => {
    const res = await kiln(['build', 'kiln-e2e-cnb-moon', '--path', tmp, '--buildpack', bp('hello-moon')]);
    assert.equal(res.code, 20, res.stdout + res.stderr);
    assert.match(res.stderr, /ERROR: no buildpack group passed detection/);
    assert.equal((res.stderr.match(/ERROR/g) ?? []).length, 1, 'one error line');
  });

  test('HOME is the build user’s home from /etc/passwd (the image sets none) and writable, as in a build container', async () => {
    const bpDir = path.join(tmp, 'home-bp');
    await mkdir(path.join(bpDir, 'bin'), { recursive: true });
    await writeFile(
      path.join(bpDir, 'buildpack.toml'),
      'api = "0.12"\n\n[buildpack]\nid = "audit/home"\nversion = "0.0.1"\n',
    );
    await writeFile(path.join(bpDir, 'bin', 'detect'), '#!/usr/bin/env bash\nmkdir -p ~/.config && exit 0\n');
    await writeFile(
      path.join(bpDir, 'bin', 'build'),
      '#!/usr/bin/env bash\nset -eo pipefail\n[[ -d ~/.config ]] || echo "detect left nothing"\nmkdir -p "$HOME/.m2" && echo kept > "$HOME/.m2/settings"\necho "home=$HOME content=$(cat ~/.m2/settings)"\n',
    );
    await chmod(path.join(bpDir, 'bin', 'detect'), 0o755);
    await chmod(path.join(bpDir, 'bin', 'build'), 0o755);
    const res = await kilnOk(['build', 'kiln-e2e-cnb-home', '--path', tmp, '--buildpack', bpDir]);
    assert.match(res.stdout + res.stderr, /home=\/home\/cnb content=kept\n/);
  });

  test('bash-script app: project.toml 0.1 with a local buildpack uri and excludes; web is the default process', async () => {
    const app = path.join(tmp, 'bash-script');
    await cp(path.join(SAMPLES, 'bash-script'), app, { recursive: true });
    const image = 'kiln-e2e-cnb-bash-script';
    const res = await kilnOk(['build', image, '--path', app, '--run-image', RUN_IMAGE]);
    const log = res.stdout + res.stderr;
    assert.match(
      log,
      /schema-version/,
      'pack warns that a descriptor without a schema version is read as 0.1',
    );
    assert.match(log, /samples\/bash-script\s+0\.0\.1/);
    // The excluded files are gone before the build starts: the buildpack lists the app dir.
    assert.match(log, /---> Bash Script buildpack\napp\.sh\nproject\.toml\n/);
    const cfg = await (await storedImage(image)).configFile();
    assert.deepEqual(cfg.config?.Entrypoint, ['/cnb/process/web']);
    const run = await kilnOk(['run', image]);
    assert.match(run.stdout, /^=== bash-script app ===\n/);
    assert.match(run.stdout, / app\.sh\n/);
    assert.doesNotMatch(run.stdout, /README|bash-script-buildpack/);
  });
});
