// kiln's own traffic and the proxy variables, end to end: registry pushes and pulls (the real
// docker-registry) and Debian downloads (InRelease, Packages, .deb from a local archive, over http
// and over https with a test CA) go through a proxy the test starts when HTTP_PROXY/HTTPS_PROXY
// say so, and go direct when NO_PROXY names the host (exactly, by suffix, by CIDR range). The
// proxy counts what it carried; every byte still comes from the real servers.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { loadSuite } from '../../src/debian/archive.ts';
import { DebCache } from '../../src/debian/deb-cache.ts';
import { readKeyring } from '../../src/debian/release.ts';
import { HttpClient, readBody } from '../../src/internal/http/client.ts';
import { isTransient } from '../../src/internal/http/retry.ts';
import { Layout } from '../../src/layout/layout.ts';
import { MediaType } from '../../src/oci/media-types.ts';
import { bytesLayer, imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { writeImage } from '../../src/registry/write.ts';
import { runMain } from '../helpers/cli.ts';
import { type ForwardProxy, startForwardProxy } from '../helpers/forward-proxy.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';

const FAST = { baseDelayMs: 5, maxDelayMs: 50, attempts: 2 };
const testdata = new URL('../../src/debian/testdata/', import.meta.url).pathname;

function image(seed: string) {
  const tar = Buffer.from(`layer ${seed} ${randomBytes(8).toString('hex')}`);
  return imageFrom({
    config: { architecture: 'amd64', os: 'linux', config: { Env: [`SEED=${seed}`] } },
    layers: [bytesLayer({ blob: gzipSync(tar), tar, mediaType: MediaType.OciLayerGzip })],
  });
}

let reg: RegistryHandle;
let proxy: ForwardProxy;
let authProxy: ForwardProxy;
let hostileProxy: ForwardProxy;
let ca: TestCa;
let archive: http.Server;
let secureArchive: https.Server;
let archiveUrl = '';
let secureUrl = '';
let work = '';
const deb = randomBytes(3000);
const debSha = createHash('sha256').update(deb).digest('hex');
const clients: HttpClient[] = [];

function httpWith(env: Record<string, string>, caFiles: string[] = []): HttpClient {
  const c = new HttpClient({ env, caFiles });
  clients.push(c);
  return c;
}

before(async () => {
  reg = await startRegistry();
  proxy = await startForwardProxy();
  authProxy = await startForwardProxy({ user: 'corp', password: 'proxy-pass-4711' });
  ca = await makeTestCa();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-http-proxy-'));
  const inRelease = await readFile(`${testdata}bookworm-security_InRelease`);
  const serve = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.method === 'PUT' && req.url === '/upload') {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        h.update(c);
        n += c.length;
      });
      req.on('end', () => res.end(`${n} ${h.digest('hex')}`));
    } else if (req.url === '/pool/main/t/tiny/tiny_1.0_all.deb') res.end(deb);
    else if (req.url === '/dists/bookworm-security/InRelease') res.end(inRelease);
    else if (req.url === '/dists/bookworm-security/main/binary-amd64/Packages.xz') res.end('Package: x\n');
    else res.writeHead(404).end();
  };
  archive = http.createServer(serve);
  secureArchive = https.createServer({ cert: ca.serverCert, key: ca.serverKey }, serve);
  await new Promise<void>((r) => archive.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => secureArchive.listen(0, '127.0.0.1', r));
  archiveUrl = `http://127.0.0.1:${(archive.address() as AddressInfo).port}`;
  secureUrl = `https://127.0.0.1:${(secureArchive.address() as AddressInfo).port}`;
  hostileProxy = await startForwardProxy(undefined, { connectTo: secureUrl.slice(8) });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  archive.closeAllConnections();
  secureArchive.closeAllConnections();
  await new Promise((r) => archive.close(r));
  await new Promise((r) => secureArchive.close(r));
  await proxy.stop();
  await authProxy.stop();
  await hostileProxy.stop();
  await reg.stop();
  await ca.cleanup();
  await rm(work, { recursive: true, force: true });
});

/** pushPull pushes a fresh image to `host` and pulls it back by digest through `http`. */
async function pushPull(httpClient: HttpClient, host: string, repo: string): Promise<void> {
  const client = new RegistryClient({ http: httpClient, retry: FAST });
  const img = image(repo);
  const ref = parseReference(`${host}/${repo}:1`);
  await writeImage(client, ref, img);
  const pulled = await remoteImage(client, parseReference(`${host}/${repo}@${await img.digest()}`));
  assert.equal(await pulled.digest(), await img.digest());
  const [layer] = await pulled.layers();
  const chunks: Buffer[] = [];
  for await (const c of await layer!.compressed()) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).length, (await layer!.size()) as number);
}

const port = () => reg.host.slice(reg.host.lastIndexOf(':') + 1);

describe('registry push and pull', () => {
  test('go through HTTP_PROXY (plain forwarding), with the proxy credentials of its URL', async () => {
    const before = authProxy.calls.length;
    await pushPull(httpWith({ http_proxy: authProxy.url }), reg.host, 'via/proxy');
    const calls = authProxy.calls.slice(before);
    assert.ok(calls.every((c) => c.kind === 'forward' && c.target === reg.host));
    const seen = calls.map((c) => `${c.method} ${c.path}`);
    assert.ok(seen.includes('GET /v2/'), seen.join(', '));
    assert.ok(seen.includes('PUT /v2/via/proxy/manifests/1'), seen.join(', '));
    assert.ok(
      seen.some((s) => /^GET \/v2\/via\/proxy\/blobs\/sha256:/.test(s)),
      seen.join(', '),
    );
  });

  test('a proxy that refuses the request fails the push with a line that holds no proxy password', async () => {
    const client = new RegistryClient({
      http: httpWith({ HTTP_PROXY: proxyWithWrongPassword() }),
      retry: FAST,
    });
    await assert.rejects(
      writeImage(client, parseReference(`${reg.host}/refused/app:1`), image('refused')),
      (e: Error) => {
        assert.ok(!e.message.includes('wrong-pass-0815'), e.message);
        assert.match(e.message, /registry/);
        return true;
      },
    );
  });

  for (const [what, noProxy, host] of [
    ['the exact host', () => '127.0.0.1', () => reg.host],
    ['the exact host and port', () => `example.invalid, 127.0.0.1:${port()}`, () => reg.host],
    ['a CIDR range', () => '10.0.0.0/8,127.0.0.0/8', () => reg.host],
    ['a domain suffix with a leading dot', () => '.localhost', () => `localhost:${port()}`],
    ['*', () => '*', () => reg.host],
  ] as const) {
    test(`bypass the proxy when NO_PROXY names ${what}`, async () => {
      const before = proxy.calls.length;
      await pushPull(
        httpWith({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: noProxy() }),
        host(),
        'direct/app',
      );
      assert.deepEqual(proxy.calls.slice(before), []);
    });
  }

  test('still use the proxy when NO_PROXY names other hosts, ports and ranges', async () => {
    const before = proxy.calls.length;
    const noProxy = `127.0.0.2,10.0.0.0/8,127.0.0.1:1,.example.com,host,::1`;
    await pushPull(httpWith({ HTTP_PROXY: proxy.url, no_proxy: noProxy }), reg.host, 'still/proxied');
    assert.ok(proxy.calls.length > before);
  });
});

describe('the CLI', () => {
  test('kiln image copy pushes through HTTP_PROXY from its environment, and goes direct per NO_PROXY', async () => {
    const dir = path.join(work, 'cli-layout');
    const layout = await Layout.init(dir);
    await layout.writeImage(image('cli'), 'v1');
    const env = {
      HOME: work,
      KILN_HOME: path.join(work, 'kiln-home'),
      KILN_CONFIG: path.join(work, 'none.toml'),
    };
    const before = proxy.calls.length;
    const viaProxy = await runMain(['-q', 'image', 'copy', `oci:${dir}:v1`, `${reg.host}/cli/app:1`], {
      ...env,
      http_proxy: proxy.url,
    });
    assert.equal(viaProxy.code, 0, viaProxy.err);
    const seen = proxy.calls.slice(before).map((c) => `${c.kind} ${c.method} ${c.path}`);
    assert.ok(seen.includes('forward PUT /v2/cli/app/manifests/1'), seen.join(', '));
    const direct = await runMain(['-q', 'image', 'copy', `oci:${dir}:v1`, `${reg.host}/cli/app:2`], {
      ...env,
      HTTP_PROXY: proxy.url,
      NO_PROXY: '127.0.0.0/8',
    });
    assert.equal(direct.code, 0, direct.err);
    assert.ok(
      !proxy.calls.some((c) => c.path === '/v2/cli/app/manifests/2'),
      'the NO_PROXY push went through the proxy',
    );
  });
});

function proxyWithWrongPassword(): string {
  return `http://corp:wrong-pass-0815@127.0.0.1:${authProxy.port}`;
}

describe('Debian downloads', () => {
  const ref = (base: string) => ({
    name: 'tiny',
    version: '1.0',
    url: `${base}/pool/main/t/tiny/tiny_1.0_all.deb`,
    sha256: debSha,
    size: deb.length,
  });

  test('InRelease and Packages come through HTTP_PROXY', async () => {
    const before = proxy.calls.length;
    const keyring = await readKeyring(`${testdata}debian-archive-keyring.gpg`);
    await assert.rejects(
      loadSuite(
        { suite: 'bookworm-security', mirror: archiveUrl, components: ['main'] },
        {
          keyring,
          arch: 'amd64',
          cacheDir: path.join(work, 'idx'),
          http: httpWith({ HTTP_PROXY: proxy.url }),
        },
      ),
      // The signed InRelease came through and verified; the served Packages is not the signed one.
      /Packages\.xz: sha256 mismatch/,
    );
    assert.deepEqual(
      proxy.calls.slice(before).map((c) => c.path),
      ['/dists/bookworm-security/InRelease', '/dists/bookworm-security/main/binary-amd64/Packages.xz'],
    );
  });

  test('a .deb over https goes through HTTPS_PROXY (CONNECT) and trusts the extra CA', async () => {
    const before = proxy.calls.length;
    const cache = new DebCache(path.join(work, 'debs-https'));
    const [file] = await cache.fetchAll([ref(secureUrl)], {
      http: httpWith({ HTTPS_PROXY: proxy.url, HTTP_PROXY: 'http://127.0.0.1:9' }, [ca.caFile]),
    });
    assert.deepEqual(await readFile(file!), deb);
    assert.deepEqual(proxy.calls.slice(before), [{ kind: 'connect', target: secureUrl.slice(8) }]);
  });

  test('without the extra CA the https download fails naming the URL', async () => {
    const cache = new DebCache(path.join(work, 'debs-untrusted'));
    await assert.rejects(
      cache.fetchAll([ref(secureUrl)], { http: httpWith({ HTTPS_PROXY: proxy.url }) }),
      /GET https:\/\/127\.0\.0\.1:\d+\/pool\/main\/t\/tiny\/tiny_1\.0_all\.deb failed: .*(certificate|CERT)/i,
    );
  });

  test('a .deb goes direct when NO_PROXY names the archive by CIDR range', async () => {
    const before = proxy.calls.length;
    const cache = new DebCache(path.join(work, 'debs-direct'));
    const [file] = await cache.fetchAll([ref(archiveUrl)], {
      http: httpWith({ HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.0/8' }),
    });
    assert.deepEqual(await readFile(file!), deb);
    assert.deepEqual(proxy.calls.slice(before), []);
  });

  test('a .deb through HTTP_PROXY that is longer than the index says is cut off and not cached', async () => {
    const cache = new DebCache(path.join(work, 'debs-short'));
    await assert.rejects(
      cache.fetchAll([{ ...ref(archiveUrl), size: 100 }], { http: httpWith({ HTTP_PROXY: proxy.url }) }),
      /response body larger than 100 bytes/,
    );
    assert.equal(await cache.has(debSha), false);
  });
});

describe('https through a CONNECT tunnel', () => {
  const securePort = () => secureUrl.slice(secureUrl.lastIndexOf(':') + 1);

  test('requests to one origin share one tunnel, opened with the proxy credentials; uploads stream through it', async () => {
    const before = authProxy.calls.length;
    const client = httpWith({ HTTPS_PROXY: authProxy.url }, [ca.caFile]);
    // By name: TLS inside the tunnel checks the certificate against "localhost".
    const base = `https://localhost:${securePort()}`;
    const inRelease = await readFile(`${testdata}bookworm-security_InRelease`);
    for (let i = 0; i < 3; i++) {
      const res = await client.get(`${base}/dists/bookworm-security/InRelease`);
      assert.equal(res.status, 200);
      assert.deepEqual(await readBody(res, 1 << 20, 'InRelease'), inRelease);
    }
    const chunk = randomBytes(1 << 20);
    async function* body() {
      for (let i = 0; i < 5; i++) yield chunk;
    }
    const up = await client.request(`${base}/upload`, { method: 'PUT', body: body() });
    const sha = createHash('sha256');
    for (let i = 0; i < 5; i++) sha.update(chunk);
    assert.equal((await readBody(up, 1024, 'upload')).toString(), `${5 << 20} ${sha.digest('hex')}`);
    assert.deepEqual(authProxy.calls.slice(before), [
      { kind: 'connect', target: `localhost:${securePort()}` },
    ]);
  });

  test('a proxy that answers CONNECT with 407 fails the download at once, naming the proxy and not its password', async () => {
    const http = httpWith({ HTTPS_PROXY: proxyWithWrongPassword() }, [ca.caFile]);
    const e = await http.request(`${secureUrl}/dists/bookworm-security/InRelease`).then(
      () => assert.fail('the request went through'),
      (err: Error) => err,
    );
    assert.match(
      e.message,
      /^proxy 127\.0\.0\.1:\d+ refused CONNECT 127\.0\.0\.1:\d+: 407 Proxy Authentication Required$/,
    );
    assert.equal(isTransient(e), false);
    const cache = new DebCache(path.join(work, 'debs-407'));
    await assert.rejects(
      cache.fetchAll(
        [
          {
            name: 'tiny',
            version: '1.0',
            url: `${secureUrl}/pool/main/t/tiny/tiny_1.0_all.deb`,
            sha256: debSha,
            size: deb.length,
          },
        ],
        { http },
      ),
      (err: Error) => {
        assert.match(err.message, /failed: proxy 127\.0\.0\.1:\d+ refused CONNECT .*: 407/);
        assert.ok(!err.message.includes('wrong-pass-0815'), err.message);
        return true;
      },
    );
  });

  test('an https:// proxy (TLS to the proxy, trusted through the extra CA) forwards http and tunnels https', async () => {
    const tlsProxy = await startForwardProxy(
      { user: 'corp', password: 'tls-pass-2202' },
      { tls: { cert: ca.serverCert, key: ca.serverKey } },
    );
    try {
      const client = httpWith({ HTTP_PROXY: tlsProxy.url, HTTPS_PROXY: tlsProxy.url }, [ca.caFile]);
      const plain = await client.get(`${archiveUrl}/pool/main/t/tiny/tiny_1.0_all.deb`);
      assert.deepEqual(await readBody(plain, 1 << 20, 'deb'), deb);
      // TLS to the server inside the TLS connection to the proxy.
      const secure = await client.get(`${secureUrl}/pool/main/t/tiny/tiny_1.0_all.deb`);
      assert.deepEqual(await readBody(secure, 1 << 20, 'deb'), deb);
      assert.deepEqual(
        tlsProxy.calls.map((c) => c.kind),
        ['forward', 'connect'],
      );
      await client.close();
    } finally {
      await tlsProxy.stop();
    }
  });

  test('a proxy cannot pass off another server as the target: the certificate must name the target', async () => {
    // The hostile proxy sends every tunnel to the test archive, whose certificate (trusted CA)
    // names only localhost and 127.0.0.1.
    const client = httpWith({ HTTPS_PROXY: hostileProxy.url }, [ca.caFile]);
    await assert.rejects(
      client.request(`https://kiln-target.invalid:${securePort()}/dists/bookworm-security/InRelease`),
      (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
        return true;
      },
    );
    assert.deepEqual(hostileProxy.calls, [
      { kind: 'connect', target: `kiln-target.invalid:${securePort()}` },
    ]);
  });
});
