// A hostile registry (a tiny node:http server on 127.0.0.1 per test): its token realm points at
// another host, which must not receive the credentials configured for the registry; the same
// host on another port (a token server next to the registry) still does. Blobs that do not match
// their digest, that never end, or whose Content-Length lies are refused (stops at the size).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { KilnError } from '../../src/internal/errors.ts';
import { RegistryClient, realmMayGetCredentials } from '../../src/registry/client.ts';
import { staticKeychain } from '../../src/registry/credentials.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';

const FAST = { baseDelayMs: 2, maxDelayMs: 10, attempts: 2 };
const servers: http.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function serve(host: string, handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, host, r));
  return `${host}:${(s.address() as AddressInfo).port}`;
}

/** A token server recording the Authorization headers it was sent. */
async function tokenServer(host: string): Promise<{ at: string; auth: (string | undefined)[] }> {
  const auth: (string | undefined)[] = [];
  const at = await serve(host, (req, res) => {
    auth.push(req.headers.authorization);
    if (!req.headers.authorization) return void res.writeHead(401).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 't0k3n' }));
  });
  return { at, auth };
}

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A registry that challenges for a bearer token at `realm` and serves one image. */
async function registry(
  realm: string,
  blob: (res: http.ServerResponse) => void,
  blobBytes: Buffer,
): Promise<string> {
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [sha(blobBytes)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha(config),
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: sha(blobBytes),
          size: blobBytes.length,
        },
      ],
    }),
  );
  return serve('127.0.0.1', (req, res) => {
    if (!req.headers.authorization)
      return void res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="reg"` }).end();
    if (req.url?.includes('/manifests/'))
      return void res
        .writeHead(200, {
          'content-type': 'application/vnd.oci.image.manifest.v1+json',
          'docker-content-digest': sha(manifest),
        })
        .end(manifest);
    if (req.url?.includes(`/blobs/${sha(config)}`)) return void res.writeHead(200).end(config);
    if (req.url?.includes('/blobs/')) return blob(res);
    if (req.url === '/v2/') return void res.writeHead(200).end('{}');
    res.writeHead(404).end();
  });
}

function client(host: string): RegistryClient {
  return new RegistryClient({
    retry: FAST,
    keychain: staticKeychain({ [host]: { kind: 'basic', username: 'user', password: 'hostile-pw-7' } }),
  });
}

async function readLayer(host: string): Promise<Buffer> {
  const img = await remoteImage(client(host), parseReference(`${host}/a/b:c`));
  const [layer] = await img.layers();
  const chunks: Buffer[] = [];
  for await (const c of await layer!.compressed()) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('hostile registry', () => {
  test('a token realm on another host gets no credentials; the error says why in one line', async () => {
    const tok = await tokenServer('127.0.0.2');
    const host = await registry(`http://${tok.at}/token`, (res) => res.end(), Buffer.alloc(0));
    await assert.rejects(readLayer(host), (e: Error) => {
      assert.ok(e instanceof KilnError, String(e));
      assert.match(e.message, /token realm 127\.0\.0\.2:\d+ is not the registry's host or domain/);
      assert.doesNotMatch(e.message, /hostile-pw-7|\n/);
      return true;
    });
    assert.ok(tok.auth.length > 0);
    assert.deepEqual(
      tok.auth.filter((a) => a !== undefined),
      [],
      'the other host never saw an Authorization header',
    );
  });

  test('a token server on the registry host (another port) gets the credentials', async () => {
    const tok = await tokenServer('127.0.0.1');
    const body = Buffer.from('layer bytes');
    const host = await registry(`http://${tok.at}/token`, (res) => res.end(body), body);
    assert.deepEqual(await readLayer(host), body);
    assert.ok(tok.auth.some((a) => a?.startsWith('Basic ')));
  });

  test('which realms may get credentials', () => {
    const ok = (reg: string, scheme: string, realm: string) =>
      realmMayGetCredentials(reg, scheme, new URL(realm));
    assert.ok(ok('index.docker.io', 'https', 'https://auth.docker.io/token'));
    assert.ok(ok('registry.gitlab.com', 'https', 'https://gitlab.com/jwt/auth'));
    assert.ok(ok('ghcr.io', 'https', 'https://ghcr.io/token'));
    assert.ok(!ok('ghcr.io', 'https', 'http://ghcr.io/token'), 'no clear text to an https registry');
    assert.ok(!ok('ghcr.io', 'https', 'https://ghcr.io.evil.example/token'));
    assert.ok(!ok('registry.example.com', 'https', 'https://example.com.evil.example/token'));
    assert.ok(!ok('10.0.0.5:5000', 'http', 'http://10.0.0.6/token'));
    assert.ok(ok('localhost:5000', 'http', 'http://localhost:5001/token'));
  });

  test('a blob that never ends is cut at its descriptor size and refused', async () => {
    const tok = await tokenServer('127.0.0.1');
    const body = Buffer.from('small');
    const host = await registry(
      `http://${tok.at}/token`,
      (res) => {
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        const pump = () => {
          while (!res.destroyed && res.write(chunk)) {}
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      },
      body,
    );
    const t0 = Date.now();
    await assert.rejects(readLayer(host), /: more than the expected 5 bytes; refusing content$/);
    assert.ok(Date.now() - t0 < 10_000);
  });

  test('a blob whose Content-Length lies (short body) or whose content does not match is refused', async () => {
    const tok = await tokenServer('127.0.0.1');
    const body = Buffer.from('the real layer');
    const liar = await registry(
      `http://${tok.at}/token`,
      (res) => {
        res.writeHead(200, { 'content-length': String(body.length) });
        res.end(Buffer.from('the fake layer'));
      },
      body,
    );
    await assert.rejects(readLayer(liar), /does not match its digest/);
  });
});
