// The transports with real parts: a real layout and store on disk, a real docker-archive, the
// Docker Distribution registry (started here, behind a counting proxy). Every adapter meets the
// same contract: what is written reads back with the same digest, describe needs no layer,
// referrers attached are listed and read back, and the store is opened once per Transports.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type ProxyHandle,
  type RegistryHandle,
  startProxy,
  startRegistry,
} from '../../test/helpers/registry.ts';
import { fileEntry } from '../../test/helpers/tar-entries.ts';
import { DaemonClient } from '../daemon/client.ts';
import { writeLayer } from '../layers/layer-writer.ts';
import { BlobStore } from '../layout/blob-store.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { imageFrom } from '../oci/memory.ts';
import { RegistryClient } from '../registry/client.ts';
import { parseReference } from '../registry/reference.ts';
import { remoteImage } from '../registry/remote.ts';
import { artifactImage } from '../sbom/artifact.ts';
import { ImageStore } from '../store/store.ts';
import type { ImageTarget } from './image-target.ts';
import { explainUnreachable, type PullPolicy, Transports } from './transports.ts';

let root: string;
let reg: RegistryHandle;
let proxy: ProxyHandle;
let image: Image;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'kiln-transport-'));
  reg = await startRegistry();
  proxy = await startProxy(reg.host);
  const blobs = new BlobStore(path.join(root, 'scratch'));
  const layers = [
    await writeLayer([fileEntry('a.txt', 'first layer\n')], { store: blobs }),
    await writeLayer([fileEntry('b.txt', 'second layer\n')], { store: blobs }),
  ];
  image = imageFrom({ config: { architecture: 'amd64', os: 'linux', config: { User: '1000' } }, layers });
});
after(async () => {
  await proxy?.stop();
  await reg?.stop();
  await rm(root, { recursive: true, force: true });
});

function transports(storeDir = path.join(root, 'store')): Transports {
  return new Transports({ client: new RegistryClient({}), storeDir });
}

function sbomOf(subject: { digest: Digest; size: number; mediaType: string }, name: string): Image {
  const doc = new TextEncoder().encode(JSON.stringify({ bomFormat: 'CycloneDX', components: [{ name }] }));
  return artifactImage({
    artifactType: 'application/vnd.cyclonedx+json',
    subject,
    files: [{ mediaType: 'application/vnd.cyclonedx+json', data: doc, title: 'sbom.cdx.json' }],
  });
}

/**
 * The contract every adapter meets: write, read back, describe, find, referrers. A docker-archive
 * keeps layers as plain tars (docker's format), so it reads back the same config, not the same
 * manifest, and is never a previous image.
 */
async function roundTrip(t: ImageTarget, referrers: boolean): Promise<void> {
  const written = await t.write(image);
  assert.equal(written.digest, await image.digest(), t.name);
  const back = await t.read();
  if (referrers) {
    assert.equal(await back.digest(), written.digest, `${t.name}: read back`);
    assert.equal(await (await t.find())?.digest(), written.digest);
  } else {
    assert.equal((await back.manifest()).config.digest, (await image.manifest()).config.digest);
    assert.equal(await t.find(), undefined);
  }
  const d = await t.describe();
  assert.equal(d.digest, await back.digest());
  assert.equal(d.mediaType, await back.mediaType());
  assert.deepEqual(d.platforms, [{ os: 'linux', architecture: 'amd64' }]);
  const subject = { digest: d.digest, size: (await back.rawManifest()).length, mediaType: d.mediaType };
  if (!referrers) {
    assert.deepEqual(await t.referrers.list(d.digest), []);
    await assert.rejects(t.referrers.attach(sbomOf(subject, 'x')), /cannot hold referrers/);
    return;
  }
  const art = sbomOf(subject, `pkg-of-${t.name}`);
  await t.referrers.attach(art);
  await t.referrers.attach(art); // idempotent
  const listed = await t.referrers.list(written.digest, 'application/vnd.cyclonedx+json');
  assert.equal(listed.length, 1, t.name);
  assert.equal(listed[0]!.descriptor.digest, await art.digest());
  const blob = await listed[0]!.blob(listed[0]!.manifest.layers[0]!);
  assert.match(new TextDecoder().decode(blob), new RegExp(`pkg-of-${t.name.replace(/[^a-z0-9]/gi, '.')}`));
  assert.deepEqual(await t.referrers.list(written.digest, 'application/spdx+json'), []);
}

describe('parse', () => {
  test('transports, bare names and --publish', async () => {
    const t = transports(path.join(root, 'never'));
    assert.equal(t.parse('oci:rel/dir:v1').name, `oci:${path.resolve('rel/dir')}:v1`);
    assert.equal(t.parse('docker-archive:/x/a.tar:app:v1').name, 'docker-archive:/x/a.tar:app:v1');
    assert.equal(t.parse('local:my-app').name, 'local:docker.io/library/my-app:latest');
    assert.equal(t.parse('docker://ghcr.io/a/b:1').registry, 'ghcr.io');
    assert.equal(t.parse('my-app').registry, 'index.docker.io');
    assert.equal(t.destination('my-app', false).imageName, 'docker.io/library/my-app:latest');
    assert.equal(t.destination('my-app', true).registry, 'index.docker.io');
    assert.equal(t.destination('docker://my-app', false).registry, 'index.docker.io');
    assert.throws(() => t.parse('oci:'), /invalid image "oci:": oci: needs a directory/);
    assert.throws(() => t.parse('s3://bucket/x'), /unknown transport "s3:\/\/"/);
    assert.throws(() => t.parse('local:'), /local: needs an image name/);
    assert.throws(() => t.parse('a b'), /invalid image "a b"/);
    assert.throws(
      () => t.registryReference('oci:/x', '--cache-image'),
      /--cache-image oci:\/x: must be a registry/,
    );
    await assert.rejects(stat(path.join(root, 'never')), /ENOENT/, 'parsing creates no store');
  });

  test('the digest reference each location records', () => {
    const t = transports(path.join(root, 'never'));
    const d = `sha256:${'a'.repeat(64)}`;
    assert.equal(t.parse('run:v1').digestReference(d), `docker.io/library/run@${d}`);
    assert.equal(t.local('run:v1').digestReference(d), `docker.io/library/run@${d}`);
    assert.equal(
      t.parse('localhost:5000/kiln/run:latest').digestReference(d),
      `localhost:5000/kiln/run@${d}`,
    );
    assert.equal(t.parse('oci:/x/layout:run').digestReference(d), `oci:/x/layout@${d}`);
    assert.equal(t.parse('docker-archive:/x/a.tar').digestReference(d), `docker-archive:/x/a.tar@${d}`);
    const daemon = new Transports({
      client: new RegistryClient({}),
      storeDir: path.join(root, 'never'),
      daemon: new DaemonClient({ sockets: [] }),
    });
    assert.equal(
      daemon.parse('docker-daemon:run:v1').digestReference(d),
      `docker-daemon:docker.io/library/run@${d}`,
    );
  });

  test('docker-daemon: names, and --daemon sends bare names there', () => {
    const dc = new DaemonClient({ sockets: [] });
    const opts = { client: new RegistryClient({}), storeDir: path.join(root, 'never'), daemon: dc };
    const t = new Transports(opts);
    assert.equal(t.parse('docker-daemon:my-app').name, 'docker-daemon:docker.io/library/my-app:latest');
    assert.equal(t.parse('docker-daemon:localhost/a/b:2').imageName, 'localhost/a/b:2');
    assert.throws(() => t.parse('docker-daemon:'), /docker-daemon: needs an image name/);
    assert.equal(t.destination('my-app', false).name, 'local:docker.io/library/my-app:latest');
    const pack = new Transports({ ...opts, preferDaemon: true });
    assert.equal(pack.destination('my-app', false).name, 'docker-daemon:docker.io/library/my-app:latest');
    assert.equal(pack.destination('oci:/x:y', false).name, 'oci:/x:y');
    assert.equal(pack.destination('my-app', true).registry, 'index.docker.io');
    const none = new Transports({ client: new RegistryClient({}), storeDir: path.join(root, 'never') });
    assert.throws(() => none.parse('docker-daemon:x'), /not available/);
  });
});

describe('pull policy (--pull-policy)', () => {
  test('always reads a registry name from its registry; if-not-present and never take the local copy', async () => {
    const storeDir = path.join(root, 'pull-store');
    const name = `${reg.host}/pull/app:1`;
    const local = imageFrom({ config: { architecture: 'amd64', os: 'linux', config: { User: 'local' } } });
    const remote = imageFrom({ config: { architecture: 'amd64', os: 'linux', config: { User: 'remote' } } });
    const t = (pullPolicy?: PullPolicy) =>
      new Transports({ client: new RegistryClient({}), storeDir, ...(pullPolicy ? { pullPolicy } : {}) });
    await t().parse(name).write(remote);
    await t().local(name).write(local);
    const user = async (p?: PullPolicy) => (await (await t(p).locate(name)).read()).configFile();
    assert.equal((await user('always')).config?.User, 'remote');
    assert.equal((await user('if-not-present')).config?.User, 'local');
    assert.equal((await user()).config?.User, 'local');
    assert.equal((await user('never')).config?.User, 'local');
    await assert.rejects(
      t('never').locate(`${reg.host}/pull/only-remote:1`),
      /is not in the local store and --pull-policy is never \(no registry is asked\)/,
    );
    await assert.rejects(t('never').locate(`docker://${name}`), /--pull-policy is never/);
  });
});

describe('explainUnreachable', () => {
  // The error a real registry read gives when the registry cannot be reached.
  async function unreachableError(): Promise<unknown> {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const client = new RegistryClient({ retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
    return remoteImage(client, parseReference(`127.0.0.1:${port}/app:v1`)).then(
      () => assert.fail('a closed port answered'),
      (e: unknown) => e,
    );
  }

  test('a bare name not in the local store and an unreachable registry: one line naming both', async () => {
    const err = await unreachableError();
    const e = explainUnreachable('my-app:v2', 'index.docker.io', '/kiln/images', err);
    assert.ok(e instanceof Error);
    assert.match(
      e.message,
      /^image my-app:v2 not found in the local store \(\/kiln\/images\) and registry index\.docker\.io unreachable: \S+/,
    );
    assert.doesNotMatch(e.message, /\n/);
    assert.equal(e.cause, err);
  });

  test('names with a registry host and other failures keep their error', async () => {
    const err = await unreachableError();
    for (const arg of ['localhost:5000/app', 'ghcr.io/x/app:v1', 'docker://my-app'])
      assert.equal(explainUnreachable(arg, 'r', '/s', err), err, arg);
    const notFound = new Error('GET manifest my-app: 404 MANIFEST_UNKNOWN');
    assert.equal(explainUnreachable('my-app', 'r', '/s', notFound), notFound);
  });
});

describe('adapters', () => {
  test('local store', async () => {
    await roundTrip(transports().local('adapters/app:v1'), true);
  });
  test('OCI layout', async () => {
    const t = transports();
    assert.equal(
      await t.parse(`oci:${root}/missing:v1`).find(),
      undefined,
      'a missing layout is a first build',
    );
    await roundTrip(t.parse(`oci:${root}/layout:v1`), true);
  });
  test('docker-archive (holds no referrers)', async () => {
    await roundTrip(transports().parse(`docker-archive:${root}/app.tar:app:v1`), false);
  });
  test('registry: describe reads no layer; referrers through the registry', async () => {
    const t = transports();
    assert.equal(await t.parse(`${proxy.host}/adapters/app:missing`).find(), undefined);
    await t.parse(`${proxy.host}/adapters/app:v1`).write(image);
    proxy.reset();
    const d = await t.parse(`${proxy.host}/adapters/app:v1`).describe();
    assert.equal(d.digest, await image.digest());
    const layers = (await image.manifest()).layers.map((l) => l.digest);
    const fetched = proxy.stats.requests.filter((r) => layers.some((l) => r.path.endsWith(`/blobs/${l}`)));
    assert.deepEqual(fetched, [], 'describe fetched no layer');
    await roundTrip(t.parse(`${proxy.host}/adapters/app:v1`), true);
  });
});

describe('fan-out and the store', () => {
  test('--tag: store names, registry tags and a layout in one write; each blob uploaded once', async () => {
    const t = transports(path.join(root, 'fan-store'));
    const out = t.fanOut([
      t.destination('fan/app:v1', false),
      t.parse(`${proxy.host}/fan/app:v1`),
      t.destination('fan/app:extra', false),
      t.parse(`${proxy.host}/fan/app:extra`),
      t.parse(`oci:${root}/fan-layout:v1`),
    ]);
    proxy.reset();
    const w = await out.write(image);
    assert.equal(w.digest, await image.digest());
    assert.deepEqual(w.names, [
      'docker.io/fan/app:v1',
      `${proxy.host}/fan/app:v1`,
      'docker.io/fan/app:extra',
      `${proxy.host}/fan/app:extra`,
      `oci:${root}/fan-layout:v1`,
    ]);
    const uploads = proxy.stats.requests.filter(
      (r) => r.method === 'POST' && r.path.includes('/blobs/uploads'),
    );
    assert.equal(uploads.length, 3, 'two layers and the config, once each');
    const client = new RegistryClient({});
    for (const tag of ['v1', 'extra'])
      assert.equal(
        await (await remoteImage(client, parseReference(`${proxy.host}/fan/app:${tag}`))).digest(),
        w.digest,
      );
    const store = await ImageStore.open(path.join(root, 'fan-store'));
    assert.equal(await store.digestOf('fan/app:v1'), w.digest);
    assert.equal(await store.digestOf('fan/app:extra'), w.digest);
    // Written again: nothing is uploaded (the registry has every blob).
    proxy.reset();
    await out.write(image);
    assert.equal(proxy.stats.uploadBytes, 0);
  });

  test('one command opens the store once, however many targets use it', async () => {
    const storeDir = path.join(root, 'count-store');
    const opens = { n: 0 };
    const open = ImageStore.open;
    ImageStore.open = async (dir: string) => {
      if (dir === storeDir) opens.n++;
      return open.call(ImageStore, dir);
    };
    try {
      const t = transports(storeDir);
      assert.equal((await t.locate('count/app')).registry, 'index.docker.io', 'no store yet: the registry');
      assert.equal(opens.n, 0, 'locating a name does not create the store');
      await t.fanOut([t.destination('count/app', false), t.destination('count/app:b', false)]).write(image);
      const located = await t.locate('count/app');
      assert.equal(located.name, 'local:docker.io/count/app:latest');
      await located.read();
      await t
        .with({ platform: { os: 'linux', architecture: 'amd64' } })
        .local('count/app:b')
        .read();
      await t.storeReferrers().list((await image.digest()) as Digest);
      assert.ok(await t.held('count/app:b'));
      assert.equal(opens.n, 1);
    } finally {
      ImageStore.open = open;
    }
  });
});
