// Run-image flavours through `kiln build`: `--run-image shell` builds on the stack's shell flavour,
// where processes that are scripts (`#!/bin/sh`, the samples' `#!/usr/bin/env bash` sys-info) run
// with `kiln run` and podman; `kiln inspect` names the flavour; `kiln rebase` stays within it; a
// flavour the builder does not have is a clear error.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setConfig } from '../../src/oci/mutate.ts';
import { ImageStore } from '../../src/store/store.ts';
import type { Podman } from '../helpers/podman.ts';
import { KILN_HOME, kiln, kilnOk, podmanOnKilnStore, ROOT, storedImage } from './samples-harness.ts';

const SHELL_IMAGE = 'kiln/stacks/bookworm/run-shell';
const HELLO_PROCESSES = path.join(ROOT, 'test', 'e2e', 'cnb-samples', 'hello-processes');

let podman: Podman;
let podmanStore: string;
let tmp: string;

before(async () => {
  ({ podman, store: podmanStore } = await podmanOnKilnStore());
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-flavours-'));
});
after(async () => {
  await podman?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** shScriptBuildpack writes a buildpack whose default process is a `#!/bin/sh` script in a launch layer. */
async function shScriptBuildpack(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(
    path.join(dir, 'buildpack.toml'),
    'api = "0.10"\n[buildpack]\nid = "test/sh-script"\nversion = "0.0.1"\n[[stacks]]\nid = "*"\n',
  );
  await writeFile(path.join(dir, 'bin', 'detect'), '#!/bin/sh\nexit 0\n');
  await writeFile(
    path.join(dir, 'bin', 'build'),
    `#!/bin/sh
set -e
layers=$1
mkdir -p "$layers/hello"
printf '#!/bin/sh\\necho "hello from sh: uid=$(id -u) args=$*"\\n' > "$layers/hello/hello.sh"
chmod 0755 "$layers/hello/hello.sh"
printf '[types]\\nlaunch = true\\n' > "$layers/hello.toml"
printf '[[processes]]\\ntype = "web"\\ncommand = ["%s/hello/hello.sh"]\\ndefault = true\\n' "$layers" > "$layers/launch.toml"
`,
  );
  for (const f of ['detect', 'build']) await chmod(path.join(dir, 'bin', f), 0o755);
}

async function labelsOf(image: string): Promise<Record<string, string>> {
  return (await (await storedImage(image)).configFile()).config?.Labels ?? {};
}

describe('kiln build --run-image shell', () => {
  const image = 'kiln-e2e-flavour-shell';

  test('scripts as processes build on the shell flavour and run with kiln run and podman', async () => {
    const app = path.join(tmp, 'app');
    await mkdir(app);
    await writeFile(path.join(app, 'README'), 'any app\n');
    const bp = path.join(tmp, 'sh-script');
    await shScriptBuildpack(bp);
    const res = await kilnOk([
      'build',
      image,
      '--path',
      app,
      '--run-image',
      'shell',
      '--buildpack',
      HELLO_PROCESSES,
      '--buildpack',
      bp,
    ]);
    assert.match(res.stderr + res.stdout, /Run image kiln\/stacks\/bookworm\/run-shell \(flavour shell\)/);
    const labels = await labelsOf(image);
    assert.equal(labels['io.kiln.stack.flavour'], 'shell');
    const md = JSON.parse(labels['io.buildpacks.lifecycle.metadata']!) as { runImage: { image: string } };
    // The flavour's image name is recorded: rebase follows it.
    assert.equal(md.runImage.image, SHELL_IMAGE);

    const web = await kiln(['run', image, '--network', 'none', '--', 'a', 'b'], { timeoutMs: 60_000 });
    assert.equal(web.code, 0, web.stderr);
    assert.match(web.stdout, /^hello from sh: uid=1001 args=a b$/m);
    const info = await kiln(['run', image, '--network', 'none', '--process', 'sys-info'], {
      timeoutMs: 60_000,
    });
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /^sys-info: uid=1001 pwd=\/workspace/m);

    const ref = `oci:${podmanStore}:docker.io/library/${image}:latest`;
    const p = await podman.run(ref, ['x']);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /^hello from sh: uid=1001 args=x$/m);
    const p2 = await podman.run(ref, [], { entrypoint: 'sys-info' });
    assert.equal(p2.code, 0, p2.stderr);
    assert.match(p2.stdout, /^sys-info: uid=1001/m);
  });

  test('kiln inspect names the flavour', async () => {
    const human = await kilnOk(['inspect', image]);
    assert.match(human.stdout, /^ {2}Flavour: shell$/m);
    const json = await kilnOk(['inspect', image, '-o', 'json']);
    assert.equal((JSON.parse(json.stdout) as { base: { flavour?: string } }).base.flavour, 'shell');
  });

  test('kiln rebase picks the shell flavour’s newer image, not the default run image', async () => {
    const store = await ImageStore.open(path.join(KILN_HOME, 'images'));
    const original = (await store.find(SHELL_IMAGE))!;
    // A "newer" shell flavour: the same root filesystem under another config (a new digest).
    const newer = setConfig(original, (cfg) => ({
      ...cfg,
      config: { ...cfg.config, Labels: { ...cfg.config?.Labels, 'io.kiln.stack.recipe': 'sha256:rebuilt' } },
    }));
    await store.write(newer, [SHELL_IMAGE]);
    try {
      await kilnOk(['rebase', image]);
      const labels = await labelsOf(image);
      // The base labels come from the new run image (io.kiln.stack.* like io.buildpacks.base.*).
      assert.equal(labels['io.kiln.stack.recipe'], 'sha256:rebuilt');
      assert.equal(labels['io.kiln.stack.flavour'], 'shell');
      const md = JSON.parse(labels['io.buildpacks.lifecycle.metadata']!) as {
        runImage: { image: string; reference: string };
      };
      assert.equal(md.runImage.image, SHELL_IMAGE);
      assert.ok(md.runImage.reference.endsWith(await newer.digest()), md.runImage.reference);
      const web = await kiln(['run', image, '--network', 'none'], { timeoutMs: 60_000 });
      assert.equal(web.code, 0, web.stderr);
      assert.match(web.stdout, /^hello from sh: uid=1001/m);
    } finally {
      await store.write(original, [SHELL_IMAGE]);
    }
  });

  test('a flavour the builder does not have fails naming the ones it has', async () => {
    const app = path.join(tmp, 'app2');
    await mkdir(app);
    await writeFile(path.join(app, 'Procfile'), 'web: /bin/true\n');
    const res = await kiln(['build', 'kiln-e2e-flavour-none', '--path', app, '--run-image', 'shel']);
    assert.notEqual(res.code, 0);
    assert.match(
      res.stderr,
      /--run-image "shel": no run image of builder \S+ has the flavour "shel" \(flavours: default, shell\)/,
    );
  });

  test('project.toml [io.kiln] run-image selects the flavour', async () => {
    const app = path.join(tmp, 'app3');
    await mkdir(app);
    await writeFile(
      path.join(app, 'project.toml'),
      '[_]\nschema-version = "0.2"\n[io.kiln]\nrun-image = "shell"\n',
    );
    const bp = path.join(tmp, 'sh-script');
    await kilnOk(['build', 'kiln-e2e-flavour-project', '--path', app, '--buildpack', bp]);
    assert.equal((await labelsOf('kiln-e2e-flavour-project'))['io.kiln.stack.flavour'], 'shell');
  });
});
