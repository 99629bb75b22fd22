import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { joinUrl, loadSuite } from './archive.ts';
import { readKeyring } from './release.ts';

const dir = new URL('./testdata/', import.meta.url).pathname;
let server: Server;
let mirror = '';
let cache = '';

before(async () => {
  cache = await mkdtemp(path.join(tmpdir(), 'kiln-archive-'));
  const inRelease = await readFile(`${dir}bookworm-security_InRelease`);
  // A mirror that serves the real signed InRelease but a Packages index that is not the one
  // the signature vouches for.
  server = createServer((req, res) => {
    if (req.url === '/dists/bookworm-security/InRelease') res.end(inRelease);
    else if (req.url === '/dists/bookworm-security/main/binary-amd64/Packages.xz')
      res.end('Package: evil\nVersion: 1\n');
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

after(async () => {
  server.close();
  await rm(cache, { recursive: true, force: true });
});

describe('loadSuite()', () => {
  test('refuses a Packages index whose sha256 is not the signed one, and caches nothing', async () => {
    const keyring = await readKeyring(`${dir}debian-archive-keyring.gpg`);
    await assert.rejects(
      loadSuite(
        { suite: 'bookworm-security', mirror, components: ['main'] },
        { keyring, arch: 'amd64', cacheDir: cache },
      ),
      /dists\/bookworm-security\/main\/binary-amd64\/Packages\.xz: sha256 mismatch: expected [0-9a-f]{64}/,
    );
    assert.deepEqual(await readdir(path.join(cache, 'indexes')), []);
  });

  test('names a missing suite by its URL', async () => {
    const keyring = await readKeyring(`${dir}debian-archive-keyring.gpg`);
    await assert.rejects(
      loadSuite(
        { suite: 'nosuch', mirror, components: ['main'] },
        { keyring, arch: 'amd64', cacheDir: cache },
      ),
      /GET http:\/\/127\.0\.0\.1:\d+\/dists\/nosuch\/InRelease failed: HTTP 404/,
    );
  });

  test('joinUrl joins with exactly one slash', () => {
    assert.equal(joinUrl('http://m/debian/', '/pool/a.deb'), 'http://m/debian/pool/a.deb');
    assert.equal(joinUrl('http://m/debian', 'pool/a.deb'), 'http://m/debian/pool/a.deb');
  });
});
