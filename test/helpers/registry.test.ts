import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { startCountingProxy, startProxy, startRegistry } from './registry.ts';

// These exercise the helpers with plain fetch, so that a broken helper is found here and not as
// a puzzling failure in the registry client's own tests.

describe('test registry helpers', () => {
  test('anonymous registry behind the counting proxy counts upload bytes', async () => {
    const reg = await startRegistry();
    const proxy = await startCountingProxy(reg.host);
    try {
      const ping = await fetch(`${reg.url}/v2/`);
      assert.equal(ping.status, 200);
      const body = Buffer.from('hello registry');
      const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
      const start = await fetch(`${proxy.url}/v2/t/blobs/uploads/`, { method: 'POST' });
      assert.equal(start.status, 202);
      const loc = new URL(start.headers.get('location')!, proxy.url);
      assert.equal(loc.host, proxy.host, 'Location points back at the proxy');
      loc.searchParams.set('digest', digest);
      const put = await fetch(loc, { method: 'PUT', body });
      assert.equal(put.status, 201);
      assert.equal(proxy.stats.uploadBytes, body.length);
      const head = await fetch(`${proxy.url}/v2/t/blobs/${digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(proxy.stats.uploadBytes, body.length, 'HEAD counts nothing');
    } finally {
      await proxy.stop();
      await reg.stop();
    }
  });

  test('token registry: 401 challenge, token with basic auth, then access; wrong password refused', async () => {
    const reg = await startRegistry({ auth: 'token', users: { alice: 'pw1' } });
    try {
      const ping = await fetch(`${reg.url}/v2/`);
      assert.equal(ping.status, 401);
      const challenge = ping.headers.get('www-authenticate')!;
      assert.match(
        challenge,
        /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token",service="kiln-test-registry"/,
      );
      const tk = reg.tokenServer!;
      const scope = 'repository:a/b:pull,push';
      const bad = await fetch(`${tk.url}/token?service=${tk.service}&scope=${scope}`, {
        headers: { authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` },
      });
      assert.equal(bad.status, 401);
      const good = await fetch(`${tk.url}/token?service=${tk.service}&scope=${scope}`, {
        headers: { authorization: `Basic ${Buffer.from('alice:pw1').toString('base64')}` },
      });
      assert.equal(good.status, 200);
      const { token } = (await good.json()) as { token: string };
      const up = await fetch(`${reg.url}/v2/a/b/blobs/uploads/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(up.status, 202, await up.text());
      const other = await fetch(`${reg.url}/v2/c/d/blobs/uploads/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(other.status, 401, 'token is scoped to a/b');
      assert.deepEqual(
        tk.requests.map((r) => r.status),
        [401, 200],
      );
    } finally {
      await reg.stop();
    }
  });

  test('fault proxy answers scripted statuses then forwards', async () => {
    const reg = await startRegistry();
    let n = 0;
    const proxy = await startProxy(reg.host, (r) =>
      r.path === '/v2/' && n++ < 2 ? { status: 500, body: 'boom' } : undefined,
    );
    try {
      const codes: number[] = [];
      for (let i = 0; i < 3; i++) codes.push((await fetch(`${proxy.url}/v2/`)).status);
      assert.deepEqual(codes, [500, 500, 200]);
    } finally {
      await proxy.stop();
      await reg.stop();
    }
  });
});
