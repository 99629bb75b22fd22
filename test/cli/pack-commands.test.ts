// `kiln buildpack inspect`, `kiln completion` and `kiln report` through the CLI: a buildpack
// scaffolded and packaged by kiln is inspected from its .cnb file and from the local store.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runMain } from '../helpers/cli.ts';

let work: string;
let env: Record<string, string | undefined>;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-bpinspect-'));
  env = { HOME: work, PATH: process.env.PATH, KILN_HOME: path.join(work, 'kiln') };
  const bp = path.join(work, 'hello-bp');
  const made = await runMain(['buildpack', 'new', 'example/hello', '--path', bp, '-V', '1.2.3'], env);
  assert.equal(made.code, 0, made.err);
  const cnb = await runMain(
    ['buildpack', 'package', path.join(work, 'hello.cnb'), '--path', bp, '--format', 'file'],
    env,
  );
  assert.equal(cnb.code, 0, cnb.err);
  const stored = await runMain(['buildpack', 'package', 'example/hello-pkg:1', '--path', bp], env);
  assert.equal(stored.code, 0, stored.err);
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('kiln buildpack inspect', () => {
  test('a .cnb file: id, version, targets, buildpacks, detection order', async () => {
    const r = await runMain(['buildpack', 'inspect', path.join(work, 'hello.cnb')], env);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^Inspecting buildpack: '.*hello\.cnb'/);
    assert.match(r.out, /ID: example\/hello\nVersion: 1\.2\.3/);
    assert.match(r.out, /Targets:\n {2}linux\/amd64/);
    assert.match(r.out, /Buildpacks:\n {2}ID +VERSION +HOMEPAGE\n {2}example\/hello +1\.2\.3/);
    assert.match(r.out, /Detection Order:\n {2}└ example\/hello@1\.2\.3/);
  });

  test('a package in the local store, as JSON; a non-package is one clear error', async () => {
    const r = await runMain(['buildpack', 'inspect', 'example/hello-pkg:1', '-o', 'json'], env);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { buildpack: { id: string; version: string }; buildpacks: unknown[] };
    assert.deepEqual(j.buildpack, { id: 'example/hello', version: '1.2.3' });
    assert.equal(j.buildpacks.length, 1);
    const bad = await runMain(['buildpack', 'inspect', 'example/hello@1.2.3'], env);
    assert.equal(bad.code, 3);
    assert.match(bad.err, /not a buildpackage image or \.cnb file/);
  });
});

describe('kiln completion', () => {
  test('bash: the script completes commands, subcommands and flags in a real bash', async () => {
    const r = await runMain(['completion', 'bash'], env);
    assert.equal(r.code, 0, r.err);
    const file = path.join(work, 'kiln.bash');
    await writeFile(file, r.out);
    const ask = (words: string[]) =>
      execFileSync(
        'bash',
        [
          '-c',
          `source ${file}; COMP_WORDS=(${words.join(' ')}); COMP_CWORD=${words.length - 1}; _kiln; echo "\${COMPREPLY[*]}"`,
        ],
        { encoding: 'utf8' },
      ).trim();
    assert.deepEqual(ask(['kiln', 'bu']).split(' ').sort(), ['build', 'builder', 'buildpack']);
    assert.equal(ask(['kiln', 'build', 'app', '--pull']), '--pull-policy');
    assert.equal(ask(['kiln', 'buildpack', 'ins']), 'inspect');
    assert.equal(ask(['kiln', 'sbom', 'download', '--output']), '--output-dir');
  });

  test('zsh and fish scripts name the same commands; other shells are refused', async () => {
    const zsh = await runMain(['completion', 'zsh'], env);
    assert.equal(zsh.code, 0);
    assert.match(
      zsh.out,
      /^#compdef kiln\n# kiln completion for zsh.*\nautoload -U \+X bashcompinit && bashcompinit\n/,
    );
    assert.match(zsh.out, /complete -o default -F _kiln kiln/);
    const fish = await runMain(['completion', 'fish'], env);
    assert.equal(fish.code, 0);
    assert.match(fish.out, /complete -c kiln -n '__fish_use_subcommand' -a 'build' -d 'build an app image/);
    assert.match(fish.out, /complete -c kiln -n '__fish_seen_subcommand_from build' -l volume -d /);
    const bad = await runMain(['completion', 'tcsh'], env);
    assert.equal(bad.code, 3);
  });
});

describe('kiln report', () => {
  test('versions, APIs, directories and config, never a secret', async () => {
    const cfgDir = path.join(env.KILN_HOME!, 'config');
    await mkdir(cfgDir, { recursive: true });
    await writeFile(
      path.join(cfgDir, 'config.toml'),
      'default-builder = "example/builder"\nnpm-registry = "https://user:hunter2pw@npm.example/"\n',
    );
    const secretEnv = { ...env, CNB_REGISTRY_AUTH: JSON.stringify({ 'r.example': 'Bearer tok-zz9-secret' }) };
    const r = await runMain(['report', '--explicit'], secretEnv);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Kiln:\n {2}Version: {2}\d+\.\d+\.\d+/);
    assert.match(r.out, /Supported Platform APIs: {2}[\d., ]*0\.15/);
    assert.match(r.out, /CNB_REGISTRY_AUTH set for r\.example/);
    assert.match(r.out, /default-builder = "example\/builder"/);
    assert.ok(!r.out.includes('tok-zz9-secret') && !r.out.includes('hunter2pw'), r.out);
  });
});
