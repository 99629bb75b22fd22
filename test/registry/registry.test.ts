// The registry client against a real Docker Distribution registry (no mocks): round trips,
// chunked uploads, skip-existing and cross-repository mounts counted through a proxy, faults
// injected by a proxy in front of the real registry, and referrers/tags.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Layout } from '../../src/layout/layout.ts';
import { sha256 } from '../../src/oci/digest.ts';
import type { Image } from '../../src/oci/image.ts';
import { MediaType } from '../../src/oci/media-types.ts';
import { bytesLayer, imageFrom } from '../../src/oci/memory.ts';
import { validateImage } from '../../src/oci/validate.ts';
import { RegistryClient, referrersTag } from '../../src/registry/client.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { RemoteIndex, remoteImage, remoteManifest } from '../../src/registry/remote.ts';
import { writeImage, writeIndex } from '../../src/registry/write.ts';
import { type ProxyHandle, type RegistryHandle, startProxy, startRegistry } from '../helpers/registry.ts';

const FAST = { baseDelayMs: 5, maxDelayMs: 50 };

function gzLayer(content: Buffer): ReturnType<typeof bytesLayer> {
  return bytesLayer({ blob: gzipSync(content), tar: content, mediaType: MediaType.OciLayerGzip });
}

function rawLayer(content: Buffer): ReturnType<typeof bytesLayer> {
  return bytesLayer({ blob: content, tar: content, mediaType: MediaType.OciLayer });
}

function smallImage(seed: string, extra: ReturnType<typeof bytesLayer>[] = []): Image {
  return imageFrom({
    config: { architecture: 'amd64', os: 'linux', config: { Env: [`SEED=${seed}`] } },
    layers: [gzLayer(Buffer.from(`layer one ${seed}`)), gzLayer(Buffer.from(`layer two ${seed}`)), ...extra],
  });
}

describe('registry client against docker-registry', () => {
  let reg: RegistryHandle;
  let proxy: ProxyHandle;
  let client: RegistryClient;
  let work: string;

  before(async () => {
    reg = await startRegistry();
    proxy = await startProxy(reg.host);
    client = new RegistryClient({ retry: FAST, monolithicMax: 1 << 20, chunkSize: 4 << 20 });
    work = await mkdtemp(path.join(tmpdir(), 'kiln-regtest-'));
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('push then pull round trip keeps the digest; the pulled image validates', async () => {
    const img = smallImage('rt');
    const ref = parseReference(`${reg.host}/rt/app:v1`);
    const { digest } = await writeImage(client, ref, img);
    assert.equal(digest, await img.digest());
    const back = await remoteImage(client, ref);
    assert.equal(await back.digest(), digest);
    assert.deepEqual(Buffer.from(await back.rawManifest()), Buffer.from(await img.rawManifest()));
    await validateImage(back);
    const repo = client.repository(ref);
    assert.deepEqual(await repo.listTags(), ['v1']);
    const head = await repo.headManifest('v1');
    assert.equal(head?.digest, digest);
    assert.equal(head?.mediaType, MediaType.OciManifest);
  });

  test('a >10 MB blob goes up in several streamed PATCH chunks and comes back verified', async () => {
    const big = randomBytes(11 * 1024 * 1024);
    const img = smallImage('big', [rawLayer(big)]);
    const ref = parseReference(`${proxy.host}/big/app:v1`);
    proxy.reset();
    await writeImage(client, ref, img);
    const patches = proxy.stats.requests.filter((r) => r.method === 'PATCH');
    assert.equal(patches.length, 3, '11 MiB in 4 MiB chunks');
    assert.ok(proxy.stats.uploadBytes >= big.length);
    const back = await remoteImage(client, ref);
    const layers = await back.layers();
    const got: Buffer[] = [];
    for await (const c of await layers[2]!.compressed()) got.push(c as Buffer);
    assert.ok(Buffer.concat(got).equals(big));
  });

  test('a second push uploads zero blob bytes; a push to another repository mounts', async () => {
    const img = smallImage('again', [rawLayer(randomBytes(2 << 20))]);
    const ref = parseReference(`${proxy.host}/again/app:v1`);
    await writeImage(client, ref, img);
    proxy.reset();
    const second = await writeImage(client, ref, img);
    assert.equal(proxy.stats.uploadBytes, 0);
    assert.ok([...second.blobs.values()].every((r) => r === 'exists'));

    proxy.reset();
    const src = await remoteImage(client, ref);
    const other = await writeImage(client, parseReference(`${proxy.host}/elsewhere/app:v1`), src);
    assert.equal(proxy.stats.uploadBytes, 0, 'mounted, not uploaded');
    assert.ok([...other.blobs.values()].every((r) => r === 'mounted'));
    const mounts = proxy.stats.requests.filter((r) => r.method === 'POST' && r.path.includes('mount='));
    assert.equal(mounts.length, 4, 'three layers and the config');
    assert.ok(mounts.every((r) => r.status === 201));
  });

  test('500 twice then 200: manifest reads and blob uploads retry and succeed', async () => {
    const img = smallImage('flaky');
    const ref = parseReference(`${proxy.host}/flaky/app:v1`);
    const failures = new Map<string, number>();
    proxy.setFault((r) => {
      const key = `${r.method} ${r.path.includes('/blobs/uploads/') ? 'upload' : r.path.split('/').slice(-2, -1)[0]}`;
      const n = failures.get(key) ?? 0;
      if ((key === 'PUT upload' || key === 'GET manifests') && n < 2) {
        failures.set(key, n + 1);
        return { status: 500, body: '{"errors":[{"code":"UNKNOWN","message":"injected"}]}' };
      }
      return undefined;
    });
    try {
      await writeImage(client, ref, img);
      const back = await remoteImage(client, ref);
      assert.equal(await back.digest(), await img.digest());
      assert.equal(failures.get('PUT upload'), 2);
      assert.equal(failures.get('GET manifests'), 2);
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a connection reset mid-upload restarts the upload; 429 with Retry-After is waited out', async () => {
    const img = smallImage('reset', [rawLayer(randomBytes(6 << 20))]);
    const ref = parseReference(`${proxy.host}/reset/app:v1`);
    let resets = 0;
    let throttled = 0;
    proxy.setFault((r) => {
      if (r.method === 'PATCH' && resets < 1) {
        resets++;
        return { reset: true };
      }
      if (r.method === 'HEAD' && throttled < 1) {
        throttled++;
        return { status: 429, headers: { 'retry-after': '0' } };
      }
      return undefined;
    });
    proxy.reset();
    try {
      const { digest } = await writeImage(client, ref, img);
      assert.equal(digest, await img.digest());
      assert.equal(resets, 1);
      assert.equal(throttled, 1);
      const posts = proxy.stats.requests.filter(
        (r) => r.method === 'POST' && r.path.endsWith('/blobs/uploads/'),
      );
      assert.equal(posts.length, 5, 'four blobs, one of them started twice');
      await validateImage(await remoteImage(client, ref));
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('multi-platform index: written whole, read per platform, copied to another repository', async () => {
    const amd = smallImage('amd64');
    const arm = imageFrom({
      config: { architecture: 'arm64', os: 'linux', config: {} },
      layers: [gzLayer(Buffer.from('arm layer'))],
    });
    const src = parseReference(`${proxy.host}/multi/app:v1`);
    const repo = client.repository(src, { push: true });
    const children = [];
    for (const [img, arch] of [
      [amd, 'amd64'],
      [arm, 'arm64'],
    ] as const) {
      const { digest } = await writeImage(client, { ...src, tag: undefined }, img);
      children.push({
        mediaType: MediaType.OciManifest,
        digest,
        size: (await img.rawManifest()).length,
        platform: { os: 'linux', architecture: arch },
      });
    }
    const indexBytes = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: children }),
    );
    const indexDigest = await repo.putManifest('v1', indexBytes, MediaType.OciIndex);
    const pickedArm = await remoteImage(client, src, { platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(await pickedArm.digest(), await arm.digest());
    assert.equal(
      await (await remoteImage(client, src)).digest(),
      await amd.digest(),
      'linux/amd64 by default',
    );
    await assert.rejects(
      remoteImage(client, src, { platform: { os: 'linux', architecture: 's390x' } }),
      /has no linux\/s390x image \(it has linux\/amd64, linux\/arm64\)/,
    );
    const idx = await remoteManifest(client, src);
    assert.ok(idx instanceof RemoteIndex);
    const dst = parseReference(`${proxy.host}/multi-copy/app:v1`);
    proxy.reset();
    const r = await writeIndex(client, dst, idx);
    assert.equal(r.digest, indexDigest);
    assert.equal(proxy.stats.uploadBytes, 0, 'every blob mounted from the source repository');
    const back = await client.repository(dst).getManifest('v1');
    assert.deepEqual(Buffer.from(back.bytes), indexBytes);
  });

  test('relative Location headers are resolved against the request URL', async () => {
    proxy.setFault((r) => (r.path.includes('/blobs/uploads/') ? { relativeLocation: true } : undefined));
    try {
      const img = smallImage('relative', [rawLayer(randomBytes(9 << 20))]);
      const ref = parseReference(`${proxy.host}/relative/app:v1`);
      const { digest } = await writeImage(client, ref, img);
      assert.equal(digest, await img.digest());
      await validateImage(await remoteImage(client, ref));
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('blob downloads follow redirects to another origin (as registries do to storage)', async () => {
    const img = smallImage('redirect', [rawLayer(randomBytes(1 << 20))]);
    const ref = parseReference(`${proxy.host}/redirect/app:v1`);
    await writeImage(client, ref, img);
    proxy.setFault((r) =>
      r.method === 'GET' && r.path.includes('/blobs/sha256:')
        ? { status: 307, headers: { location: `${reg.url}${r.path}` } }
        : undefined,
    );
    proxy.reset();
    try {
      const back = await remoteImage(client, ref);
      await validateImage(back);
      assert.ok(proxy.stats.requests.some((q) => q.status === 307));
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a registry that keeps failing gives a clear error after bounded retries', async () => {
    proxy.setFault((r) =>
      r.path.includes('/manifests/')
        ? { status: 503, body: '{"errors":[{"code":"UNAVAILABLE","message":"down"}]}' }
        : undefined,
    );
    proxy.reset();
    try {
      await assert.rejects(remoteImage(client, parseReference(`${proxy.host}/rt/app:v1`)), (e: Error) => {
        assert.ok(e instanceof RegistryError);
        assert.match(e.message, /^get manifest .*rt\/app:v1: 503 UNAVAILABLE: down$/);
        return true;
      });
      assert.equal(proxy.stats.requests.filter((r) => r.path.includes('/manifests/')).length, 4);
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a truncated blob body is resumed; a body that stays truncated fails clearly', async () => {
    const big = randomBytes(3 << 20);
    const img = smallImage('trunc', [rawLayer(big)]);
    const ref = parseReference(`${proxy.host}/trunc/app:v1`);
    await writeImage(client, ref, img);
    const d = sha256(big);
    let cut = 0;
    proxy.setFault((r) =>
      r.method === 'GET' && r.path.endsWith(d) && cut++ < 1 ? { truncateAfter: 100_000 } : undefined,
    );
    try {
      const back = await remoteImage(client, ref);
      const chunks: Buffer[] = [];
      for await (const c of await (await back.layers())[2]!.compressed()) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(big), 'resumed with a Range request');
      assert.equal(cut, 2, 'one cut, then the resumed request');

      proxy.setFault((r) => (r.method === 'GET' && r.path.endsWith(d) ? { truncateAfter: 1000 } : undefined));
      const again = await remoteImage(client, ref);
      await assert.rejects(
        (async () => {
          for await (const _ of await (await again.layers())[2]!.compressed());
        })(),
        /get blob .*trunc\/app@sha256:[0-9a-f]{64}: (connection failed|got \d+ bytes, expected)/,
      );
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a blob stream dropped by its reader early frees the connection', async () => {
    const big = randomBytes(4 << 20);
    const img = smallImage('early', [rawLayer(big)]);
    const ref = parseReference(`${reg.host}/early/app:v1`);
    await writeImage(client, ref, img);
    const repo = client.repository(ref);
    for (let i = 0; i < 20; i++) {
      const s = await repo.openBlob(sha256(big), big.length);
      await new Promise<void>((resolve) => s.once('data', () => resolve()));
      s.destroy();
    }
    const chunks: Buffer[] = [];
    for await (const c of await repo.openBlob(sha256(big), big.length)) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(big));
  });

  test('a blob whose content does not match its digest is refused and nothing is left in the layout', async () => {
    const big = randomBytes(1 << 20);
    const img = smallImage('corrupt', [rawLayer(big)]);
    const ref = parseReference(`${proxy.host}/corrupt/app:v1`);
    await writeImage(client, ref, img);
    const d = sha256(big);
    proxy.setFault((r) => (r.method === 'GET' && r.path.endsWith(d) ? { corrupt: true } : undefined));
    const dir = path.join(work, 'corrupt-layout');
    try {
      const src = await remoteImage(client, ref);
      const layout = await Layout.init(dir);
      await assert.rejects(
        layout.writeImage(src, 'v1'),
        /content does not match its digest|digest mismatch|does not match/,
      );
      assert.deepEqual(await layout.tags(), []);
      const blobs = (await readdir(path.join(dir, 'blobs', 'sha256'))).filter((f) => !f.startsWith('.'));
      assert.deepEqual(blobs, [], 'no blob (whole or partial) left behind');
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a manifest whose bytes do not match the digest asked for is refused', async () => {
    const img = smallImage('mdig');
    const ref = parseReference(`${proxy.host}/mdig/app:v1`);
    const { digest } = await writeImage(client, ref, img);
    proxy.setFault((r) => (r.path.endsWith(`/manifests/${digest}`) ? { corrupt: true } : undefined));
    try {
      await assert.rejects(
        client.repository(ref).getManifest(digest),
        /manifest .*mdig\/app@sha256:[0-9a-f]{64}: content does not match its digest/,
      );
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('referrers: artifacts attached to a subject are listed through the tag-schema fallback', async () => {
    const img = smallImage('subject');
    const ref = parseReference(`${reg.host}/ref/app:v1`);
    const { digest: subject } = await writeImage(client, ref, img);
    const repo = client.repository(ref, { push: true });
    const sbom = Buffer.from('{"bomFormat":"CycloneDX"}');
    await repo.uploadBlob({ digest: sha256(sbom), size: sbom.length }, async () => Readable.from([sbom]));
    const empty = Buffer.from('{}');
    await repo.uploadBlob({ digest: sha256(empty), size: 2 }, async () => Readable.from([empty]));
    const artifact = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        artifactType: 'application/vnd.cyclonedx+json',
        config: { mediaType: MediaType.OciEmpty, digest: sha256(empty), size: 2 },
        layers: [{ mediaType: 'application/vnd.cyclonedx+json', digest: sha256(sbom), size: sbom.length }],
        subject: {
          mediaType: MediaType.OciManifest,
          digest: subject,
          size: (await img.rawManifest()).length,
        },
      }),
    );
    const art = await repo.putReferrer(
      artifact,
      MediaType.OciManifest,
      { mediaType: MediaType.OciManifest, artifactType: 'application/vnd.cyclonedx+json' },
      subject,
    );
    const list = await repo.referrers(subject);
    assert.deepEqual(
      list.manifests.map((m) => [m.digest, m.artifactType]),
      [[art, 'application/vnd.cyclonedx+json']],
    );
    assert.equal((await repo.referrers(subject, 'application/spdx+json')).manifests.length, 0);
    assert.ok((await repo.listTags()).includes(referrersTag(subject)));
    const none = await client.repository(ref).referrers(sha256('nothing'));
    assert.deepEqual(none.manifests, []);
  });

  test('copy between two registries streams every blob across (no mount possible)', async () => {
    const other = await startRegistry();
    try {
      const img = smallImage('x-reg', [rawLayer(randomBytes(5 << 20))]);
      const a = parseReference(`${reg.host}/xr/app:v1`);
      await writeImage(client, a, img);
      const events: string[] = [];
      const r = await writeImage(
        client,
        parseReference(`${other.host}/xr/app:v1`),
        await remoteImage(client, a),
        {
          progress: (e) => {
            if (e.state !== 'running') events.push(`${e.action}:${e.state}:${e.label}`);
          },
        },
      );
      assert.equal(r.digest, await img.digest());
      assert.ok([...r.blobs.values()].every((x) => x === 'uploaded'));
      assert.ok(events.includes('upload:done:layer 3/3'));
      await validateImage(await remoteImage(client, parseReference(`${other.host}/xr/app:v1`)));
    } finally {
      await other.stop();
    }
  });

  test('a missing image gives a one-line error naming it', async () => {
    await assert.rejects(remoteImage(client, parseReference(`${reg.host}/nope/app:v9`)), (e: Error) => {
      assert.ok(e instanceof RegistryError);
      assert.equal(e.status, 404);
      assert.match(e.message, /^get manifest 127\.0\.0\.1:\d+\/nope\/app:v9: 404 MANIFEST_UNKNOWN/);
      return true;
    });
  });
});
