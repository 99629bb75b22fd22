// kiln config registry-mirrors: image reads go to the mirror of a registry first and
// fall back to the registry itself; against a real docker-registry. kiln config debian-mirror is
// the archive `kiln stack` reads.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { writeImage } from '../../src/registry/write.ts';
import { runMain } from '../helpers/cli.ts';
import { runImage } from '../helpers/cnb-images.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';

let reg: RegistryHandle;
let dir: string;
let env: Record<string, string>;
let digest: string;
before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-mirrors-'));
  env = { HOME: dir, KILN_HOME: path.join(dir, 'kiln'), KILN_CONFIG: path.join(dir, 'config.toml') };
  const img = await runImage({ patch: 'mirrored' });
  await writeImage(new RegistryClient({}), parseReference(`${reg.host}/kiln/run:1`), img);
  digest = await img.digest();
});
after(async () => {
  await reg.stop();
  await rm(dir, { recursive: true, force: true });
});

function kiln(...argv: string[]) {
  return runMain(argv, env);
}

test('an image of an unreachable registry is read from its configured mirror', async () => {
  const name = 'registry.invalid/kiln/run:1';
  assert.equal((await kiln('config', 'registry-mirrors', 'add', 'registry.invalid', '-m', reg.host)).code, 0);
  const r = await kiln('image', 'copy', name, `oci:${dir}/copy:run`);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim(), digest);
});

test('a mirror that fails falls back to the registry itself', async () => {
  assert.equal((await kiln('config', 'registry-mirrors', 'add', reg.host, '-m', '127.0.0.1:9')).code, 0);
  const r = await kiln('-v', 'image', 'copy', `${reg.host}/kiln/run:1`, `oci:${dir}/copy2:run`);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.trim(), digest);
  assert.match(r.err, /mirror 127\.0\.0\.1:9 of 127\.0\.0\.1:\d+: .*using the registry itself/);
});

test('kiln config debian-mirror is the archive kiln stack resolves against', async () => {
  const seen: string[] = [];
  const srv = createServer((req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const mirror = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/debian`;
    assert.equal((await kiln('config', 'debian-mirror', mirror)).code, 0);
    const r = await kiln('stack', 'update', '--dry-run');
    assert.notEqual(r.code, 0, 'the stand-in mirror has no archive');
    assert.match(r.err, new RegExp(`Resolving .* against ${mirror}`));
    assert.ok(seen.includes('/debian/dists/bookworm/InRelease'), `requests: ${seen.join(', ')}`);
  } finally {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  }
});
