// The signing key against a hostile buildpack. kiln holds the key (read before the build, as
// `kiln build --sign-key` does) and its passphrase is in kiln's environment; a buildpack then looks
// for both everywhere it can: its environment, every /proc/*/environ and cmdline it can read, key
// files anywhere in the sandbox's file system, and the key file's host path. It reports what it
// found in its log and in a launch layer. Neither the log, the image's layers nor the attached
// artifacts may hold the passphrase or the key. A key inside the app directory is refused.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { generateKeyPair } from '../../src/attest/keys.ts';
import { startBuildAttestation } from '../../src/cli/build-attest.ts';
import { createContext } from '../../src/cli/context.ts';
import { loadSigner } from '../../src/cli/supply-chain.ts';
import { UsageError } from '../../src/internal/errors.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { Transports } from '../../src/transport/transports.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

const PASS = `hostile-test-passphrase-${process.pid}`;
let w: E2E;
let reg: RegistryHandle;
let work: string;
let keyFile: string;
let keyPem: string;

const HUNT = `#!/usr/bin/env bash
# Hostile: look for kiln's signing key and passphrase everywhere this sandbox can see.
set -u
layers="$1"
mkdir -p "$layers/loot"
printf '[types]\\nlaunch = true\\n' > "$layers/loot.toml"
out="$layers/loot/found.txt"
: > "$out"
env >> "$out" 2>/dev/null
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < "$f" >> "$out" 2>/dev/null; done
find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /usr \\) -prune -o -type f \\( -name '*.key' -o -name '*.pem' \\) -print 2>/dev/null | while read -r f; do cat "$f" >> "$out" 2>/dev/null; done
cat "$(cat /workspace/key-path.txt)" >> "$out" 2>/dev/null
grep -rIh -e 'PRIVATE KEY' /tmp /workspace /layers /platform /home /root /cnb 2>/dev/null | grep -v "$out" >> "$out"
echo "hunt: $(wc -l < "$out") lines collected"
cat "$out"
`;

before(async () => {
  [w, reg] = await Promise.all([makeE2E(), startRegistry()]);
  work = await mkdtemp(path.join(tmpdir(), 'kiln-hostile-key-'));
  const pair = generateKeyPair(PASS);
  keyPem = pair.privateKeyPem;
  keyFile = path.join(work, 'release.key');
  await writeFile(keyFile, keyPem, { mode: 0o600 });
  const bp = path.join(work, 'hunter');
  await mkdir(path.join(bp, 'bin'), { recursive: true });
  await writeFile(
    path.join(bp, 'buildpack.toml'),
    'api = "0.12"\n[buildpack]\nid = "e2e/hunter"\nversion = "0.0.1"\n',
  );
  await writeFile(path.join(bp, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n');
  await writeFile(path.join(bp, 'bin', 'build'), HUNT);
  for (const f of ['detect', 'build']) await chmod(path.join(bp, 'bin', f), 0o755);
  await chmod(work, 0o755);
});
after(async () => {
  await reg?.stop();
  await w?.cleanup();
  if (work) await rm(work, { recursive: true, force: true });
});

test('a hostile buildpack finds neither the signing key nor its passphrase; the image and its artifacts hold neither', async () => {
  const app = await w.app('hunted', 'hunted');
  await writeFile(path.join(app, 'key-path.txt'), keyFile);
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const env = { HOME: work, KILN_PASSWORD: PASS };
  const ctx = createContext({ stdout: sink, stderr: sink, env, isTTY: false });
  ctx.init({});
  // As `kiln build --sign-key`: the key is read before any buildpack runs, and kiln's own
  // environment has the passphrase while they run.
  const signer = await loadSigner(ctx, keyFile, app);
  const saved = process.env.KILN_PASSWORD;
  process.env.KILN_PASSWORD = PASS;
  const ref = `${reg.host}/e2e/hunted:v1`;
  let built: Awaited<ReturnType<E2E['build']>>;
  try {
    built = await w.build(app, ref, {
      dest: ref,
      buildpacks: [path.join(work, 'hunter')],
    });
  } finally {
    if (saved === undefined) delete process.env.KILN_PASSWORD;
    else process.env.KILN_PASSWORD = saved;
  }
  const t = new Transports({ client: new RegistryClient({}), storeDir: w.store.dir }, w.store);
  const att = startBuildAttestation(
    ctx,
    { attest: true },
    true,
    {
      appDir: app,
      builder: {
        name: 'e2e/builder',
        reference: `docker.io/e2e/builder@${await w.builder.digest()}`,
        image: w.builder,
      },
      buildpacks: ['hunter'],
      envNames: [],
      options: {},
    },
    signer,
  );
  await att!.finish([t.parse(ref)], t);

  const log = built.log.lines.join('\n');
  assert.match(log, /hunt: \d+ lines collected/, 'the hunter ran');
  assert.match(log, /^PATH=/m, 'the hunter dumped its environment');
  const body = keyPem.split('\n')[1]!;
  const secrets = [PASS, body, 'ENCRYPTED PRIVATE KEY'];
  for (const s of secrets) assert.ok(!log.includes(s), `the build log shows ${s.slice(0, 20)}`);
  // Every layer of the image, uncompressed, and every artifact blob attached to it.
  const target = t.parse(ref);
  const image = await target.read();
  for (const layer of await image.layers()) {
    const tar = gunzipSync(Buffer.from(await new Response(await layer.compressed()).arrayBuffer()));
    for (const s of secrets) assert.equal(tar.includes(s), false, `a layer holds ${s.slice(0, 20)}`);
  }
  const loot = await target.referrers.list(await image.digest());
  assert.ok(loot.length >= 5);
  for (const r of loot)
    for (const l of r.manifest.layers) {
      const b = Buffer.from(await r.blob(l));
      for (const s of secrets) assert.equal(b.includes(s), false, `an artifact holds ${s.slice(0, 20)}`);
    }
});

test('a signing key inside the app directory is refused before the build', async () => {
  const app = await w.app('key-inside', 'x');
  const inside = path.join(app, 'signing.key');
  await writeFile(inside, await readFile(keyFile));
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const ctx = createContext({
    stdout: sink,
    stderr: sink,
    env: { HOME: work, KILN_PASSWORD: PASS },
    isTTY: false,
  });
  ctx.init({});
  await assert.rejects(
    loadSigner(ctx, inside, app),
    (e: unknown) => e instanceof UsageError && /inside the app directory/.test(e.message),
  );
});
