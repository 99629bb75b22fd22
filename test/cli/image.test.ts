// `kiln image copy` and `kiln image inspect` end to end against a real registry, with skopeo as
// the independent oracle: a layout kiln wrote goes into the registry with skopeo and back, and
// every hop keeps the manifest digest.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import type { TarEntry } from '../../src/layers/tar-writer.ts';
import { Layout } from '../../src/layout/layout.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { writeImage } from '../../src/registry/write.ts';
import { Transports } from '../../src/transport/transports.ts';
import { runMain } from '../helpers/cli.ts';
import {
  type ProxyHandle,
  type RegistryHandle,
  startCountingProxy,
  startRegistry,
} from '../helpers/registry.ts';
import { fileEntry } from '../helpers/tar-entries.ts';

const execFileP = promisify(execFile);

async function kiln(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runMain(args, { HOME: process.env.HOME, PATH: process.env.PATH, ...env });
  return { code: r.code, stdout: r.out, stderr: r.err };
}

function file(p: string, content: Buffer, mode = 0o644): TarEntry {
  return fileEntry(p, content, mode);
}

describe('kiln image copy / inspect', () => {
  let reg: RegistryHandle;
  let proxy: ProxyHandle;
  let work: string;
  let layoutDigest: string;
  let home: Record<string, string>;

  before(async () => {
    reg = await startRegistry();
    proxy = await startCountingProxy(reg.host);
    work = await mkdtemp(path.join(tmpdir(), 'kiln-imgcli-'));
    home = { HOME: work, DOCKER_CONFIG: path.join(work, 'docker'), KILN_HOME: path.join(work, 'kiln') };
    const layout = await Layout.init(path.join(work, 'src'));
    const base = await writeLayer(
      [
        { path: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
        file('etc/os-release', Buffer.from('ID=test\n')),
      ],
      { store: layout.blobs },
    );
    const app = await writeLayer(
      [
        { path: 'app', type: 'dir', mode: 0o755, uid: 1000, gid: 1000 },
        file('app/blob.bin', randomBytes(2 << 20)),
        file('app/run', Buffer.from('#!/bin/true\n'), 0o755),
      ],
      { store: layout.blobs, compression: 'zstd' },
    );
    const img = imageFrom({
      config: {
        architecture: 'amd64',
        os: 'linux',
        config: {
          User: '1000:1000',
          Entrypoint: ['/app/run'],
          Cmd: ['--serve'],
          Env: ['PATH=/usr/bin', 'PORT=8080'],
          WorkingDir: '/app',
          Labels: { 'io.buildpacks.rebasable': 'true' },
        },
      },
      layers: [base, app],
    });
    layoutDigest = (await layout.writeImage(img, 'v1')).digest;
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('layout -> registry -> layout keeps the digest; the second copy uploads nothing', async () => {
    const dst = `${proxy.host}/cli/app:v1`;
    const r = await kiln(['image', 'copy', `oci:${work}/src:v1`, dst], home);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), layoutDigest);
    assert.match(r.stderr, /^Copying oci:.*src:v1 to 127\.0\.0\.1:\d+\/cli\/app:v1$/m);
    assert.match(r.stderr, /layer 2\/2 sha256:[0-9a-f]{12}: pushed 2\.0 MiB/);
    assert.ok(proxy.stats.uploadBytes > 2 << 20);

    proxy.reset();
    const again = await kiln(['image', 'copy', `oci:${work}/src:v1`, `docker://${dst}`], home);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(proxy.stats.uploadBytes, 0, 'second push uploads zero blob bytes');
    assert.match(again.stderr, /already present/);

    const back = await kiln(['image', 'copy', dst, `oci:${work}/back:w`], home);
    assert.equal(back.code, 0, back.stderr);
    const idx = JSON.parse(await readFile(path.join(work, 'back', 'index.json'), 'utf8'));
    assert.equal(idx.manifests[0].digest, layoutDigest);
    assert.equal(idx.manifests[0].annotations['org.opencontainers.image.ref.name'], 'w');
  });

  test('skopeo copies the layout kiln wrote into the registry and back with the same digest', async () => {
    const tls = '--dest-tls-verify=false';
    await execFileP('skopeo', ['copy', '-q', tls, `oci:${work}/src:v1`, `docker://${reg.host}/sk/app:v1`]);
    const viaKiln = await kiln(['image', 'inspect', '--json', `${reg.host}/sk/app:v1`], home);
    assert.equal(viaKiln.code, 0, viaKiln.stderr);
    assert.equal(JSON.parse(viaKiln.stdout).digest, layoutDigest);

    await execFileP('skopeo', [
      'copy',
      '-q',
      '--src-tls-verify=false',
      `docker://${reg.host}/sk/app:v1`,
      `oci:${work}/sk:v1`,
    ]);
    const skIdx = JSON.parse(await readFile(path.join(work, 'sk', 'index.json'), 'utf8'));
    assert.equal(skIdx.manifests[0].digest, layoutDigest);
    // kiln reads the layout skopeo wrote and pushes it: still the same digest.
    const r = await kiln(['image', 'copy', `oci:${work}/sk:v1`, `${reg.host}/sk/again:v1`], home);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), layoutDigest);
    const { stdout } = await execFileP('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${reg.host}/sk/again:v1`,
    ]);
    assert.equal(JSON.parse(stdout).Digest, layoutDigest);
  });

  test('local store as a source and a sink', async () => {
    const r = await kiln(['image', 'copy', `oci:${work}/src:v1`, 'local:my-app'], home);
    assert.equal(r.code, 0, r.stderr);
    const i = await kiln(['image', 'inspect', '--json', 'local:my-app:latest'], home);
    assert.equal(i.code, 0, i.stderr);
    assert.equal(JSON.parse(i.stdout).digest, layoutDigest);
    // A bare name the store holds is the local image for copy and inspect too (no `local:`).
    const c = await kiln(['image', 'copy', 'my-app', `oci:${work}/from-store:v1`], home);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stdout.trim(), layoutDigest);
    const b = await kiln(['image', 'inspect', '--json', 'my-app'], home);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(b.stdout).reference, 'local:docker.io/library/my-app:latest');
  });

  test('docker-archive as a sink and a source; the config survives unchanged', async () => {
    const tar = path.join(work, 'app.tar');
    const w = await kiln(
      ['image', 'copy', `oci:${work}/src:v1`, `docker-archive:${tar}:example/app:v1`],
      home,
    );
    assert.equal(w.code, 0, w.stderr);
    const src = JSON.parse((await kiln(['image', 'inspect', '--json', `oci:${work}/src:v1`], home)).stdout);
    const r = await kiln(['image', 'inspect', '--json', `docker-archive:${tar}:example/app:v1`], home);
    assert.equal(r.code, 0, r.stderr);
    const arch = JSON.parse(r.stdout);
    assert.deepEqual(
      arch.layers.map((l: { diffID: string }) => l.diffID),
      src.layers.map((l: { diffID: string }) => l.diffID),
    );
    assert.deepEqual(arch.config, src.config);
    const p = await kiln(['image', 'copy', `docker-archive:${tar}`, `${reg.host}/arch/app:v1`], home);
    assert.equal(p.code, 0, p.stderr);
    const { stdout } = await execFileP('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${reg.host}/arch/app:v1`,
    ]);
    assert.equal(JSON.parse(stdout).Digest, p.stdout.trim());
  });

  test('locate: bare names the store holds are local, explicit transports win', async () => {
    const at = (storeDir: string) => new Transports({ client: new RegistryClient({}), storeDir });
    const images = at(path.join(home.KILN_HOME!, 'images'));
    assert.equal((await images.locate('my-app')).name, 'local:docker.io/library/my-app:latest');
    const reg1 = await images.locate('docker://my-app');
    assert.equal(reg1.registry, 'index.docker.io');
    const other = await images.locate('other-app:v2');
    assert.equal(other.registry, 'index.docker.io');
    const none = await at(path.join(work, 'no-store')).locate('my-app');
    assert.equal(none.registry, 'index.docker.io');
    await assert.rejects(stat(path.join(work, 'no-store')), /ENOENT/, 'locating creates no store');
    assert.equal((await images.locate(`oci:${work}/src:v1`)).name, `oci:${work}/src:v1`);
  });

  test('inspect prints digest, platform, layers and the config summary', async () => {
    const j = await kiln(['image', 'inspect', '--json', `oci:${work}/src:v1`], home);
    assert.equal(j.code, 0, j.stderr);
    const o = JSON.parse(j.stdout);
    assert.equal(o.digest, layoutDigest);
    assert.equal(o.platform, 'linux/amd64');
    assert.equal(o.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(o.config.entrypoint, ['/app/run']);
    assert.deepEqual(o.config.cmd, ['--serve']);
    assert.equal(o.config.user, '1000:1000');
    assert.equal(o.config.workingDir, '/app');
    assert.deepEqual(o.config.env, ['PATH=/usr/bin', 'PORT=8080']);
    assert.deepEqual(o.config.labels, { 'io.buildpacks.rebasable': 'true' });
    assert.equal(o.layers.length, 2);
    assert.equal(o.layers[1].mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    assert.match(o.layers[0].diffID, /^sha256:[0-9a-f]{64}$/);

    const h = await kiln(['image', 'inspect', `oci:${work}/src:v1`], home);
    assert.equal(h.code, 0);
    assert.match(h.stdout, new RegExp(`^Digest: +${layoutDigest}$`, 'm'));
    assert.match(h.stdout, /^Entrypoint: +\["\/app\/run"\]$/m);
    assert.match(h.stdout, /^Layers \(2, 2\.0 MiB total\):$/m);
  });

  test('an index: inspect lists platforms; copy --all keeps the index digest, --platform picks one', async () => {
    const client = new RegistryClient();
    const src = parseReference(`${reg.host}/multi/app:v1`);
    const img = await (await Layout.open(path.join(work, 'src'))).image('v1');
    const { digest: child } = await writeImage(client, { ...src, tag: undefined }, img);
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: child,
            size: (await img.rawManifest()).length,
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      }),
    );
    const indexDigest = await client
      .repository(src, { push: true })
      .putManifest('v1', index, 'application/vnd.oci.image.index.v1+json');
    const i = await kiln(['image', 'inspect', '--json', `${reg.host}/multi/app:v1`], home);
    assert.equal(i.code, 0, i.stderr);
    const o = JSON.parse(i.stdout);
    assert.equal(o.index.digest, indexDigest);
    assert.deepEqual(
      o.index.manifests.map((m: { platform: string }) => m.platform),
      ['linux/amd64'],
    );
    assert.equal(o.digest, child);
    const all = await kiln(
      ['image', 'copy', '--all', `${reg.host}/multi/app:v1`, `${reg.host}/multi/copy:v1`],
      home,
    );
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout.trim(), indexDigest);
    const one = await kiln(
      ['image', 'copy', '--platform', 'linux/amd64', `${reg.host}/multi/app:v1`, `${reg.host}/multi/one:v1`],
      home,
    );
    assert.equal(one.stdout.trim(), child);
    const none = await kiln(
      ['image', 'copy', '--platform', 'linux/arm64', `${reg.host}/multi/app:v1`, `${reg.host}/multi/x:v1`],
      home,
    );
    assert.equal(none.code, 1);
    assert.match(none.stderr, /has no linux\/arm64 image \(it has linux\/amd64\)/);
    const bad = await kiln(
      ['image', 'copy', '--platform', 'linux', `${reg.host}/multi/app:v1`, `oci:${work}/x`],
      home,
    );
    assert.equal(bad.code, 3);
  });

  test('errors are one line with the right exit code', async () => {
    const missing = await kiln(['image', 'inspect', `${reg.host}/nope/app:v1`], home);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /^ERROR: get manifest 127\.0\.0\.1:\d+\/nope\/app:v1: 404 MANIFEST_UNKNOWN.*\n$/,
    );
    assert.equal(missing.stderr.split('\n').length, 2);

    const bad = await kiln(['image', 'copy', 'oci:', 'x'], home);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /^ERROR: invalid image "oci:": oci: needs a directory/);

    const transport = await kiln(['image', 'inspect', 'ftp://host/x'], home);
    assert.equal(transport.code, 3);
    assert.match(transport.stderr, /unknown transport "ftp:\/\/"/);

    const usage = await kiln(['image', 'copy', 'only-one'], home);
    assert.equal(usage.code, 3);
    assert.match(usage.stderr, /^ERROR: missing required argument 'dst'/);

    const noLayout = await kiln(['image', 'inspect', `oci:${work}/does-not-exist`], home);
    assert.equal(noLayout.code, 1);
    assert.match(noLayout.stderr, /^ERROR: not an OCI image layout: /);
  });

  test('bin/kiln exits with the code and prints a stack only with --verbose', async () => {
    const bin = path.resolve(import.meta.dirname, '../../bin/kiln');
    const run = (args: string[]) =>
      execFileP(bin, args, { env: { ...process.env, ...home } }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    const plain = await run(['image', 'inspect', `${reg.host}/nope/app:v1`]);
    assert.equal(plain.code, 1);
    assert.doesNotMatch(plain.stderr, /\n\s+at /);
    const verbose = await run(['--verbose', 'image', 'inspect', `${reg.host}/nope/app:v1`]);
    assert.equal(verbose.code, 1);
    assert.match(verbose.stderr, /\n\s+at /);
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--insecure-registry <host>/);
    assert.match(help.stdout, /image/);
  });
});

describe('kiln image copy with credentials from DOCKER_CONFIG', () => {
  test('a credential helper on PATH authenticates against a token registry; the secret is never printed', async () => {
    const secret = 'cli-helper-secret-value';
    const reg = await startRegistry({ auth: 'token', users: { carol: secret } });
    const work = await mkdtemp(path.join(tmpdir(), 'kiln-imgcli-auth-'));
    try {
      const bin = path.join(work, 'bin');
      await mkdir(bin);
      await writeFile(
        path.join(bin, 'docker-credential-kilntest'),
        `#!/bin/sh\nread server\necho '{"ServerURL":"'"$server"'","Username":"carol","Secret":"${secret}"}'\n`,
        { mode: 0o755 },
      );
      const docker = path.join(work, 'docker');
      await mkdir(docker);
      await writeFile(path.join(docker, 'config.json'), JSON.stringify({ credsStore: 'kilntest' }));
      const layout = await Layout.init(path.join(work, 'src'));
      const layer = await writeLayer([file('hello.txt', Buffer.from('hello'))], { store: layout.blobs });
      const digest = (
        await layout.writeImage(
          imageFrom({ config: { architecture: 'amd64', os: 'linux', config: {} }, layers: [layer] }),
          'v1',
        )
      ).digest;
      const env = {
        HOME: work,
        KILN_HOME: path.join(work, 'kiln'),
        DOCKER_CONFIG: docker,
        PATH: `${bin}:${process.env.PATH}`,
      };
      const r = await kiln(
        ['--verbose', 'image', 'copy', `oci:${work}/src:v1`, `${reg.host}/private/app:v1`],
        env,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), digest);
      assert.ok(!(r.stdout + r.stderr).includes(secret));
      const denied = await kiln(['image', 'inspect', `${reg.host}/private/app:v1`], {
        ...env,
        DOCKER_CONFIG: work,
      });
      assert.equal(denied.code, 1);
      assert.match(
        denied.stderr,
        /^ERROR: authentication to registry 127\.0\.0\.1:\d+ failed: no credentials found/,
      );
    } finally {
      await reg.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
});
