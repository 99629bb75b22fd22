// The HTTP client's own properties, with real sockets: node:http/https/tls are loaded by the first
// request and not before (commands that make no request do not pay for them), and a streamed
// upload is pulled only as fast as the server reads it (a push holds a few socket buffers per
// upload, never a whole chunk).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { HttpClient, readBody } from './client.ts';

const run = promisify(execFile);
const src = new URL('../../', import.meta.url).pathname;

test('node:http loads with the first request, node:https and node:tls with the first https one, not before', async () => {
  const script = `
    const loaded = () => process.moduleLoadList
      .filter((m) => /^NativeModule (http|https|tls)$/.test(m)).map((m) => m.slice(13)).sort().join(',');
    const { HttpClient } = await import(${JSON.stringify(`${src}internal/http/client.ts`)});
    const { RegistryClient } = await import(${JSON.stringify(`${src}registry/client.ts`)});
    await import(${JSON.stringify(`${src}registry/write.ts`)});
    await import(${JSON.stringify(`${src}debian/archive.ts`)});
    await import(${JSON.stringify(`${src}stack/archive-access.ts`)});
    const client = new HttpClient({ env: { HTTPS_PROXY: 'http://127.0.0.1:9', NO_PROXY: '10.0.0.0/8' } });
    new RegistryClient({ http: client });
    const before = loaded();
    // Port 9 (discard) is closed here: the requests fail, but they had to load the modules.
    await client.request('http://127.0.0.1:9/').catch(() => {});
    const plain = loaded();
    await client.request('https://127.0.0.1:9/').catch(() => {});
    console.log(JSON.stringify({ before, plain, after: loaded() }));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 });
  const { before, plain, after } = JSON.parse(stdout) as { before: string; plain: string; after: string };
  assert.equal(before, '');
  assert.equal(plain, 'http');
  assert.equal(after, 'http,https,tls');
});

test('a streamed upload is pulled as the server reads: it never runs far ahead of the socket', async () => {
  const total = 64 * 1024 * 1024;
  let produced = 0;
  let aheadWhenServerStarted = -1;
  const server = http.createServer((req, res) => {
    // The server reads nothing for a while: the body must wait for it, not pile up in memory.
    setTimeout(() => {
      aheadWhenServerStarted = produced;
      let received = 0;
      req.on('data', (c: Buffer) => {
        received += c.length;
      });
      req.on('end', () => res.end(String(received)));
    }, 400);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = new HttpClient();
  try {
    async function* body(): AsyncGenerator<Uint8Array> {
      const chunk = Buffer.alloc(256 * 1024, 7);
      while (produced < total) {
        produced += chunk.length;
        yield chunk;
      }
    }
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/upload`;
    const res = await client.request(url, { method: 'PUT', body: body() });
    assert.equal((await readBody(res, 64, 'upload answer')).toString(), String(total));
    // Socket buffers on loopback hold a few MB; a body that ignores backpressure would be at 64 MB.
    assert.ok(
      aheadWhenServerStarted >= 0 && aheadWhenServerStarted < 16 * 1024 * 1024,
      `${aheadWhenServerStarted} bytes produced before the server read any`,
    );
  } finally {
    await client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
