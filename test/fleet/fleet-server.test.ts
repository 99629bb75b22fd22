// serve's HTTP face on a real socket: the page needs a loopback Host without a token (DNS
// rebinding) and the token otherwise, escapes what builds and registries wrote, hooks are
// verified and bounded, /healthz and /metrics answer.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseFleet } from '../../src/fleet/declarations.ts';
import { Git } from '../../src/fleet/git.ts';
import { Observer } from '../../src/fleet/reconcile.ts';
import { FleetServer } from '../../src/fleet/server.ts';
import { SqliteState } from '../../src/fleet/sqlite-state.ts';
import { discardLogger } from '../../src/internal/log.ts';

let dir: string;
let state: SqliteState;
const servers: FleetServer[] = [];

async function serve(o: { pageToken?: string; gitSecret?: string } = {}): Promise<number> {
  const observer = new Observer({
    state,
    head: async () => undefined,
    buildpacks: async () => [],
    git: new Git({ env: { PATH: process.env.PATH } }),
    log: discardLogger,
  });
  const s = new FleetServer({ state, observer, log: discardLogger, host: '127.0.0.1', port: 0, ...o });
  servers.push(s);
  return s.start();
}

function get(
  port: number,
  p: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => {
        body += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-fleet-server-'));
  state = SqliteState.open(path.join(dir, 's.db'));
  await state.apply(
    parseFleet(
      'schema-version = 1\n[images.web]\ntag = "127.0.0.1:1/web:1"\nsource = { path = "/srv/web" }\n',
      'f',
    ),
  );
  await state.enqueue({
    image: 'web',
    kind: 'build',
    reasons: ['CONFIG'],
    inputs: { declHash: 'x' },
    key: 'k',
  });
  const j = await state.claim('w', 1000);
  await state.finish(
    j!.id,
    'w',
    { ok: false, error: '<script>alert(1)</script>' },
    '\x1b]0;evil\x07<img src=x onerror=alert(1)>\n',
  );
});
after(async () => {
  for (const s of servers) await s.stop(1000);
  await state.close();
  await rm(dir, { recursive: true, force: true });
});

describe('fleet serve (HTTP)', () => {
  test('the page: loopback Host without a token, escaped values; a rebound DNS name is refused', async () => {
    const port = await serve();
    const page = await get(port, '/');
    assert.equal(page.status, 200);
    assert.match(page.body, /<tr data-image="web">/);
    assert.match(page.body, /class="failed">failed</);
    const img = await get(port, '/images/web');
    assert.ok(img.body.includes('&#60;script&#62;alert(1)&#60;/script&#62;'));
    assert.ok(!img.body.includes('<script>'));
    const log = await get(port, '/builds/1');
    assert.ok(!log.body.includes('<img'), 'logs escaped');
    assert.equal((await get(port, '/', { host: `evil.example:${port}` })).status, 401);
    assert.equal((await get(port, '/', { host: `localhost:${port}` })).status, 200);
    assert.equal((await get(port, '/images/nope')).status, 404);
  });

  test('with a token the page wants it; /healthz and /metrics answer without', async () => {
    const port = await serve({ pageToken: 'page-token-123' });
    assert.equal((await get(port, '/')).status, 401);
    assert.equal((await get(port, '/?token=wrong')).status, 401);
    assert.equal((await get(port, '/?token=page-token-123', { host: `fleet.example:${port}` })).status, 200);
    assert.equal((await get(port, '/api/status', { authorization: 'Bearer page-token-123' })).status, 200);
    const health = await get(port, '/healthz');
    assert.equal(health.status, 200);
    const h = JSON.parse(health.body) as { status: string; queued: number; running: number };
    assert.equal(h.status, 'ok');
    assert.equal(typeof h.queued, 'number');
    const metrics = await get(port, '/metrics');
    assert.match(metrics.body, /kiln_fleet_builds_total\{reason="CONFIG",result="failed"\} 1/);
    assert.match(metrics.body, /kiln_fleet_images 1/);
  });

  test('git hooks: off without a secret, signature checked, bodies bounded', async () => {
    const off = await serve();
    const post = (port: number, body: string | Buffer, headers: Record<string, string>) =>
      fetch(`http://127.0.0.1:${port}/hooks/git`, { method: 'POST', headers, body });
    assert.equal((await post(off, '{}', { 'x-gitlab-token': 'x' })).status, 403);
    const port = await serve({ gitSecret: 'hook-secret-1' });
    const body = JSON.stringify({ repository: { clone_url: 'file:///srv/none' } });
    assert.equal((await post(port, body, { 'x-hub-signature-256': 'sha256=00' })).status, 401);
    const sig = createHmac('sha256', 'hook-secret-1').update(body).digest('hex');
    assert.equal((await post(port, body, { 'x-hub-signature-256': `sha256=${sig}` })).status, 202);
    assert.equal((await post(port, '{not json', { 'x-gitlab-token': 'hook-secret-1' })).status, 400);
    const big = await post(port, Buffer.alloc(2 * 1024 * 1024, 0x20), {
      'x-gitlab-token': 'hook-secret-1',
    }).catch((e: Error) => ({ status: e.message }));
    assert.ok(big.status === 413 || typeof big.status === 'string', `oversized body refused (${big.status})`);
    const reg = await fetch(`http://127.0.0.1:${port}/hooks/registry`, { method: 'POST', body: '[' });
    assert.equal(reg.status, 400);
  });
});
