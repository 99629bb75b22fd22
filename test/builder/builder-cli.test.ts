import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { runMain } from '../helpers/cli.ts';
import { etcFileLayer } from '../helpers/lifecycle.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

// `kiln builder create` and `kiln builder inspect` through the CLI: a build image in an OCI
// layout, the default builder.toml's buildpacks, and the three destinations (local store, OCI
// layout, a real registry), with skopeo reading what was pushed.

const ROOT = path.resolve(import.meta.dirname, '..', '..');

let work: string;
let reg: RegistryHandle;

async function kiln(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runMain(args, {
    HOME: work,
    PATH: process.env.PATH,
    KILN_HOME: path.join(work, 'kiln-home'),
  });
  return { code: r.code, stdout: r.out, stderr: r.err };
}

before(async () => {
  execFileSync('bash', [path.join(ROOT, 'scripts/build.d/buildpacks.sh')], { stdio: 'inherit' });
  work = await mkdtemp(path.join(tmpdir(), 'kiln-builder-cli-'));
  reg = await startRegistry();
  // A small build image in an OCI layout (the builder's base).
  const layout = await Layout.init(path.join(work, 'base'));
  const passwd = Buffer.from('cnb:x:1000:1000::/home/cnb:/bin/bash\n');
  const layer = await etcFileLayer(layout.blobs, 'passwd', passwd);
  const base = imageFrom({
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: '1000:1000',
        Env: ['CNB_USER_ID=1000', 'CNB_GROUP_ID=1000'],
        Labels: { 'io.buildpacks.stack.id': 'test.stack' },
      },
    },
    layers: [layer],
  });
  await layout.writeImage(base, 'build');
  const dist = path.join(ROOT, 'dist', 'buildpacks');
  await writeFile(
    path.join(work, 'builder.toml'),
    `description = "test builder"\n` +
      ['nodejs-engine', 'npm-install', 'node-start', 'procfile']
        .map((b) => `[[buildpacks]]\nuri = "${dist}/${b}"\n`)
        .join('') +
      `[[order]]\n[[order.group]]\nid = "kiln/nodejs-engine"\n[[order.group]]\nid = "kiln/node-start"\noptional = true\n` +
      `[[order]]\n[[order.group]]\nid = "kiln/procfile"\n` +
      `[build]\nimage = "oci:${path.join(work, 'base')}:build"\n[[run.images]]\nimage = "example.test/run"\nmirrors = ["mirror.example.test/run"]\n`,
  );
});
after(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('kiln builder create / inspect', () => {
  test('creates into the local store, an OCI layout and a registry with the same digest', async () => {
    const ref = `${reg.host}/kiln/test-builder:1`;
    const res = await kiln([
      '--insecure-registry',
      reg.host,
      'builder',
      'create',
      'test-builder',
      '--config',
      path.join(work, 'builder.toml'),
      '--output',
      `oci:${path.join(work, 'out')}:builder`,
    ]);
    assert.equal(res.code, 0, res.stderr);
    // pack's `builder create REF --publish`: the same (reproducible) builder, pushed instead.
    const pub = await kiln([
      '--insecure-registry',
      reg.host,
      'builder',
      'create',
      ref,
      '--config',
      path.join(work, 'builder.toml'),
      '--publish',
    ]);
    assert.equal(pub.code, 0, pub.stderr);
    const digests = [...res.stdout.trim().split('\n'), pub.stdout.trim()];
    assert.equal(digests.length, 3);
    assert.equal(new Set(digests).size, 1, 'one image, three destinations');
    assert.match(res.stderr, /buildpack kiln\/nodejs-engine@0\.1\.0/);

    const pushed = JSON.parse(
      execFileSync('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`], { encoding: 'utf8' }),
    ) as { Digest: string; Labels: Record<string, string> };
    assert.equal(pushed.Digest, digests[0]);
    assert.ok(pushed.Labels['io.buildpacks.builder.metadata']);
  });

  test('--pull-policy never: a build image only in a registry is refused without asking it', async () => {
    const toml = path.join(work, 'never.toml');
    await writeFile(
      toml,
      (await readFile(path.join(work, 'builder.toml'), 'utf8')).replace(
        /image = "oci:[^"]*"/,
        `image = "${reg.host}/none/build:1"`,
      ),
    );
    const r = await kiln(['builder', 'create', 'never-builder', '--config', toml, '--pull-policy', 'never']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /image 127\.0\.0\.1:\d+\/none\/build:1 is not in the local store and --pull-policy is never/,
    );
  });

  test('inspect prints the builder for people and as JSON', async () => {
    const human = await kiln(['builder', 'inspect', 'test-builder']);
    assert.equal(human.code, 0, human.stderr);
    for (const line of [
      'Description: test builder',
      'Created By: kiln 0.1.0',
      'Stack: test.stack',
      '  example.test/run',
      '  mirror.example.test/run (mirror)',
      '  Group #1:',
      '    kiln/nodejs-engine@0.1.0',
      '    kiln/node-start@0.1.0    (optional)',
      '  Group #2:',
      '    kiln/procfile@0.1.0',
    ]) {
      assert.ok(human.stdout.includes(`${line}\n`), `missing "${line}" in:\n${human.stdout}`);
    }
    const json = await kiln([
      'builder',
      'inspect',
      `oci:${path.join(work, 'out')}:builder`,
      '--output',
      'json',
    ]);
    assert.equal(json.code, 0, json.stderr);
    const info = JSON.parse(json.stdout) as {
      buildpacks: { id: string }[];
      runImages: { image: string }[];
      order: unknown[];
    };
    assert.deepEqual(
      info.buildpacks.map((b) => b.id),
      ['kiln/node-start', 'kiln/nodejs-engine', 'kiln/npm-install', 'kiln/procfile'],
    );
    assert.equal(info.runImages[0]!.image, 'example.test/run');
    assert.equal(info.order.length, 2);
  });

  test('clear errors: no destination, not a builder, bad --output', async () => {
    const none = await kiln(['builder', 'create', '--config', path.join(work, 'builder.toml')]);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /name a destination/);
    const notBuilder = await kiln(['builder', 'inspect', `oci:${path.join(work, 'base')}:build`]);
    assert.notEqual(notBuilder.code, 0);
    assert.match(notBuilder.stderr, /not a builder: label io\.buildpacks\.builder\.metadata missing/);
    const badOut = await kiln(['builder', 'inspect', 'test-builder', '--output', 'yaml']);
    assert.equal(badOut.code, 3);
  });
});
