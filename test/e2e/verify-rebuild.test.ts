// `kiln verify --rebuild`: the Express sample, built, signed and published with the real stack,
// rebuilds from its signed provenance to the same digest; an app whose buildpack writes the
// current time into a layer does not, and verify names that layer and the file.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { copySample, kiln, prepareHome } from './samples-harness.ts';

const env = { KILN_PASSWORD: 'rebuild-test-passphrase' };
let reg: RegistryHandle;
let work: string;
let express: { dir: string; cleanup: () => Promise<void> };

async function ok(args: string[]) {
  const r = await kiln(['--insecure-registry', reg.host, ...args], { env });
  assert.equal(r.code, 0, `kiln ${args.join(' ')}\n${r.stdout}\n${r.stderr}`);
  return r;
}

before(async () => {
  await prepareHome();
  reg = await startRegistry();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-verify-rebuild-'));
  await ok(['key', 'generate', '--output-key-prefix', path.join(work, 'k')]);
  express = await copySample('node-express');
});
after(async () => {
  await reg?.stop();
  await express?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

test('the Express sample rebuilds from its provenance to the same digest', async () => {
  const ref = `${reg.host}/e2e/express-rebuild:v1`;
  await ok(['build', ref, '--path', express.dir, '--publish', '--sign-key', path.join(work, 'k.key')]);
  const r = await ok(['verify', ref, '--key', path.join(work, 'k.pub'), '--rebuild', '--path', express.dir]);
  assert.match(r.stdout, /rebuilt to the same digest/);
});

test('a buildpack that writes the time into a layer: verify --rebuild names the layer and the file', async () => {
  const bp = path.join(work, 'stamp-bp');
  await mkdir(path.join(bp, 'bin'), { recursive: true });
  await writeFile(
    path.join(bp, 'buildpack.toml'),
    'api = "0.12"\n[buildpack]\nid = "e2e/stamp"\nversion = "0.0.1"\n',
  );
  await writeFile(path.join(bp, 'bin', 'detect'), '#!/bin/bash\nexit 0\n');
  await writeFile(
    path.join(bp, 'bin', 'build'),
    `#!/bin/bash
set -eu
mkdir -p "$1/stamp"
date +%s%N > "$1/stamp/built-at.txt"
printf '[types]\\nlaunch = true\\n' > "$1/stamp.toml"
printf '[[processes]]\\ntype = "web"\\ncommand = ["/bin/cat", "/layers/e2e_stamp/stamp/built-at.txt"]\\ndefault = true\\n' > "$1/launch.toml"
`,
  );
  for (const f of ['detect', 'build']) await chmod(path.join(bp, 'bin', f), 0o755);
  const app = path.join(work, 'stamp-app');
  await mkdir(app);
  await writeFile(path.join(app, 'README'), 'stamped\n');
  const ref = `${reg.host}/e2e/stamped:v1`;
  await ok([
    'build',
    ref,
    '--path',
    app,
    '--buildpack',
    bp,
    '--run-image',
    'shell',
    '--publish',
    '--sign-key',
    path.join(work, 'k.key'),
  ]);
  const r = await kiln(
    [
      '--insecure-registry',
      reg.host,
      'verify',
      ref,
      '--key',
      path.join(work, 'k.pub'),
      '--rebuild',
      '--path',
      app,
    ],
    { env },
  );
  assert.notEqual(r.code, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /^rebuild: the rebuilt image is sha256:[0-9a-f]{64}, not sha256:[0-9a-f]{64}$/);
  const layer =
    /^rebuild: layer (\d+) differs: sha256:[0-9a-f]{64} in the image, sha256:[0-9a-f]{64} rebuilt$/.exec(
      lines[1]!,
    );
  assert.ok(layer, r.stdout);
  assert.ok(
    lines.includes(`rebuild: layer ${layer[1]}: /layers/e2e_stamp/stamp/built-at.txt: content`),
    r.stdout,
  );
});
