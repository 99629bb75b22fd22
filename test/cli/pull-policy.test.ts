// pack's `--pull-policy` on `kiln rebase` and `kiln buildpack package`, against a real registry:
// the same name is held in the local store (an older copy) and in the registry (a newer one), so
// each policy's choice shows in the result; `never` fails clearly when only a registry has it.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { writeImage } from '../../src/registry/write.ts';
import { ImageStore } from '../../src/store/store.ts';
import { runMain } from '../helpers/cli.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

let work: string;
let env: Record<string, string | undefined>;
let reg: RegistryHandle;
const kiln = (...argv: string[]) => runMain(argv, env);

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-pull-policy-'));
  env = {
    HOME: work,
    PATH: process.env.PATH,
    KILN_HOME: path.join(work, 'kiln'),
    DOCKER_CONFIG: path.join(work, 'docker'),
  };
  reg = await startRegistry();
});
after(async () => {
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('kiln buildpack package --pull-policy', () => {
  test('a dependency image: never refuses a registry-only one; always/if-not-present/never pick as pack does', async () => {
    const ref = `${reg.host}/bp/hello:1`;
    for (const v of ['1.0.0', '2.0.0']) {
      const made = await kiln(
        'buildpack',
        'new',
        'example/hello',
        '--path',
        path.join(work, `hello-${v}`),
        '-V',
        v,
      );
      assert.equal(made.code, 0, made.err);
    }
    const pub = await kiln(
      'buildpack',
      'package',
      ref,
      '--path',
      path.join(work, 'hello-2.0.0'),
      '--publish',
    );
    assert.equal(pub.code, 0, pub.err);
    // A composite that depends on the package by image reference.
    const meta = path.join(work, 'meta');
    await rm(meta, { recursive: true, force: true });
    await mkdir(meta, { recursive: true });
    await writeFile(
      path.join(meta, 'buildpack.toml'),
      'api = "0.10"\n[buildpack]\nid = "example/meta"\nversion = "0.1.0"\n[[order]]\n[[order.group]]\nid = "example/hello"\n',
    );
    const toml = path.join(work, 'package.toml');
    await writeFile(toml, `[buildpack]\nuri = "${meta}"\n[[dependencies]]\nimage = "${ref}"\n`);
    const pkg = (policy: string) =>
      kiln(
        'buildpack',
        'package',
        path.join(work, `meta-${policy}.cnb`),
        '-c',
        toml,
        '--format',
        'file',
        '--pull-policy',
        policy,
      );
    const versionIn = async (policy: string) => {
      const r = await kiln('buildpack', 'inspect', path.join(work, `meta-${policy}.cnb`), '-o', 'json');
      assert.equal(r.code, 0, r.err);
      const j = JSON.parse(r.out) as { buildpacks: { id: string; version: string }[] };
      return j.buildpacks.find((b) => b.id === 'example/hello')?.version;
    };

    const never = await pkg('never');
    assert.notEqual(never.code, 0);
    assert.match(
      never.err,
      new RegExp(`image ${ref.replace(/[.]/g, '\\.')} is not in the local store and --pull-policy is never`),
    );

    // An older copy under the same name in the local store.
    const local = await kiln('buildpack', 'package', ref, '--path', path.join(work, 'hello-1.0.0'));
    assert.equal(local.code, 0, local.err);
    for (const [policy, want] of [
      ['never', '1.0.0'],
      ['if-not-present', '1.0.0'],
      ['always', '2.0.0'],
    ] as const) {
      const r = await pkg(policy);
      assert.equal(r.code, 0, `${policy}: ${r.err}`);
      assert.equal(await versionIn(policy), want, `--pull-policy ${policy}`);
    }
    const bad = await pkg('sometimes');
    assert.equal(bad.code, 3, bad.err);
  });
});

describe('kiln rebase --pull-policy', () => {
  test('the run image: never refuses a registry-only one; always takes the registry copy over the held one', async () => {
    const client = new RegistryClient({});
    const runRef = `${reg.host}/kiln/run:bookworm`;
    const v1 = await runImage({ patch: '1' });
    const app = await appImage({
      run: v1,
      runImageName: runRef,
      runImageReference: `${reg.host}/kiln/run@${await v1.digest()}`,
    });
    const fresh = await runImage({ patch: 'registry', layers: 3 });
    await writeImage(client, parseReference(runRef), fresh);
    const store = await ImageStore.open(ImageStore.defaultDir(env.KILN_HOME!));
    await store.write(app, ['apps/demo']);

    const never = await kiln('rebase', 'apps/demo', '--pull-policy', 'never');
    assert.notEqual(never.code, 0);
    assert.match(never.err, /kiln\/run:bookworm is not in the local store and --pull-policy is never/);

    const held = await runImage({ patch: 'held', layers: 2 });
    await store.write(held, [runRef]);
    const topOf = async () => {
      const img = (await (await ImageStore.open(ImageStore.defaultDir(env.KILN_HOME!))).find('apps/demo'))!;
      const md = parseLifecycleMetadata(
        (await img.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!,
      );
      return md.runImage.topLayer;
    };
    const topOfImage = async (i: typeof held) => (await i.configFile()).rootfs.diff_ids.at(-1);
    const ifNot = await kiln('rebase', 'apps/demo', '--pull-policy', 'if-not-present');
    assert.equal(ifNot.code, 0, ifNot.err);
    assert.equal(await topOf(), await topOfImage(held), 'if-not-present: the held run image');
    const always = await kiln('rebase', 'apps/demo', '--pull-policy', 'always');
    assert.equal(always.code, 0, always.err);
    assert.equal(await topOf(), await topOfImage(fresh), 'always: the registry run image');

    const clash = await kiln('rebase', `${reg.host}/apps/demo:1`, '--publish', '--pull-policy', 'never');
    assert.equal(clash.code, 3, clash.err);
    assert.match(clash.err, /--publish reads the registry, which --pull-policy never forbids/);
  });
});
