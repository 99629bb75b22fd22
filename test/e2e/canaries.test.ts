// Platform-input canaries: a binding secret, a user CA certificate and a proxy password planted by the
// test reach the buildpacks (through the real platform inputs: bindings, CA trust, proxy env) but
// appear in no layer blob (decompressed), no image config, no cache file and no log line, even
// though a buildpack prints them all. Logging goes through the CLI's own Logger, whose redaction
// the platform's Redactor feeds, as in `kiln build`.

import assert from 'node:assert/strict';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Logger } from '../../src/cli/logger.ts';
import { platformSetup } from '../../src/cli/platform-options.ts';
import { resolveSettings } from '../../src/cli/settings.ts';
import { makeTestCa, type TestCa } from '../helpers/test-ca.ts';
import { type E2E, makeE2E } from './build-fixture.ts';

const stamp = `${process.pid}x${Date.now().toString(36)}`;
const BINDING_CANARY = `bind-canary-${stamp}`;
const PROXY_CANARY = `proxy-canary-${stamp}`;

let w: E2E;
let ca: TestCa;
before(async () => {
  w = await makeE2E();
  ca = await makeTestCa(`canary CA ${stamp}`);
});
after(async () => {
  await w?.cleanup();
  await ca?.cleanup();
});

async function* files(dir: string): AsyncGenerator<string> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (e.isFile()) yield p;
  }
}

/** Every form a blob's bytes could hide a canary in: raw, and gunzipped when it is gzip. */
function views(buf: Buffer): Buffer[] {
  if (buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      return [buf, gunzipSync(buf)];
    } catch {
      return [buf];
    }
  }
  return [buf];
}

test('binding secrets, CA files and proxy passwords reach buildpacks but no layer, config, cache entry or log line', async () => {
  const caBody = ca.caPem.split('\n')[1]!; // a line of the certificate's base64 body
  const canaries = [BINDING_CANARY, PROXY_CANARY, caBody];

  const bindingDir = path.join(w.root, 'binding-canary');
  await mkdir(bindingDir);
  await writeFile(path.join(bindingDir, 'type'), 'secret-store');
  await writeFile(path.join(bindingDir, 'secret'), `${BINDING_CANARY}\n`);
  const bps = path.join(w.root, 'canary-buildpacks');
  await cp(
    path.join(import.meta.dirname, 'buildpacks-canary', 'leaky'),
    path.join(bps, 'test_leaky', '0.0.1'),
    {
      recursive: true,
    },
  );
  const app = await w.app('canary', 'canary app');

  const logText: string[] = [];
  const log = new Logger({
    out: new Writable({
      write(c, _e, cb) {
        logText.push(String(c));
        cb();
      },
    }),
    level: 'debug',
    color: false,
    bars: false,
  });
  const kilnEnv = {
    HOME: w.root,
    KILN_CONFIG: path.join(w.root, 'no-config.toml'),
    PATH: process.env.PATH,
    HTTPS_PROXY: `http://builder:${PROXY_CANARY}@127.0.0.1:9`,
  };
  const settings = resolveSettings({}, kilnEnv, { isTTY: false });
  const setup = await platformSetup({
    flags: { binding: [`canary=${bindingDir}`], caCerts: [ca.caFile] },
    settings,
    log,
    appDir: app,
    env: { BP_CANARY_OK: 'visible' },
    userEnv: {},
  });
  const cacheDir = path.join(w.root, 'cache', 'canary');
  const b = await w.build(app, 'canary-app', {
    log,
    buildpacks: ['test/leaky@0.0.1'],
    extraBuildpacksDir: bps,
    cacheDir,
    preparePlatform: (dir, uid, gid, rootfs) => setup.prepare(dir, uid, gid, rootfs),
  });
  const text = logText.join('');
  // The buildpack did see and print everything...
  assert.match(text, /leaky: SERVICE_BINDING_ROOT=\/platform\/bindings/);
  assert.match(text, /leaky: secret via SERVICE_BINDING_ROOT: \[REDACTED\]/);
  assert.match(text, /leaky: env HTTPS_PROXY=http:\/\/\[REDACTED\]@127\.0\.0\.1:9/);
  assert.match(text, /leaky: ca \[REDACTED\]/);
  // ...and no canary survived anywhere.
  for (const c of canaries) assert.ok(!text.includes(c), `log line holds canary ${c}`);
  const image = (await w.store.find('canary-app'))!;
  assert.equal(await image.digest(), b.digest);
  const configText = Buffer.from(await image.rawConfig()).toString('utf8');
  for (const c of canaries) assert.ok(!configText.includes(c), `image config holds canary ${c}`);
  assert.ok(!configText.includes('_PROXY'), 'no proxy variable in the image config');
  assert.ok(!configText.includes('SERVICE_BINDING_ROOT'), 'no binding root in the image config');
  for (const layer of await image.layers()) {
    const chunks: Buffer[] = [];
    for await (const c of await layer.uncompressed()) chunks.push(c as Buffer);
    const tar = Buffer.concat(chunks);
    for (const c of canaries)
      assert.equal(tar.indexOf(c), -1, `layer ${await layer.diffID()} holds canary ${c}`);
  }
  let scanned = 0;
  for (const root of [cacheDir, path.join(w.root, 'store')]) {
    for await (const f of files(root)) {
      scanned++;
      for (const v of views(await readFile(f)))
        for (const c of canaries) assert.equal(v.indexOf(c), -1, `${f} holds canary ${c}`);
    }
  }
  assert.ok(scanned > 5, `scanned the cache and every blob of the store (${scanned} files)`);
});

test('--ca-certs-launch adds a launch layer with the certificates, launch env and an SBOM entry', async () => {
  const app = await w.app('ca-launch', 'runtime trust');
  const bps = path.join(w.root, 'canary-buildpacks-2');
  await cp(
    path.join(import.meta.dirname, 'buildpacks-canary', 'leaky'),
    path.join(bps, 'test_leaky', '0.0.1'),
    {
      recursive: true,
    },
  );
  const bindingDir = path.join(w.root, 'binding-canary-2');
  await mkdir(bindingDir);
  await writeFile(path.join(bindingDir, 'type'), 'secret-store');
  await writeFile(path.join(bindingDir, 'secret'), 'x');
  const settings = resolveSettings(
    {},
    { HOME: w.root, KILN_CONFIG: path.join(w.root, 'none.toml') },
    { isTTY: false },
  );
  const log = new Logger({
    out: new Writable({ write: (_c, _e, cb) => cb() }),
    level: 'info',
    color: false,
    bars: false,
  });
  const setup = await platformSetup({
    flags: { binding: [`canary=${bindingDir}`], caCerts: [ca.caFile], caCertsLaunch: true },
    settings,
    log,
    appDir: app,
    env: {},
    userEnv: {},
  });
  await w.build(app, 'ca-launch-app', {
    log,
    buildpacks: ['test/leaky@0.0.1'],
    extraBuildpacksDir: bps,
    cacheDir: path.join(w.root, 'cache', 'ca-launch'),
    preparePlatform: (dir, uid, gid, rootfs) => setup.prepare(dir, uid, gid, rootfs),
    launchLayer: async (layersDir) =>
      (await setup.launchLayer(layersDir)) ? { id: 'kiln/ca-certificates' } : undefined,
  });
  const image = (await w.store.find('ca-launch-app'))!;
  const md = JSON.parse((await image.configFile()).config!.Labels!['io.buildpacks.lifecycle.metadata']!);
  const entry = md.buildpacks.find((b: { key: string }) => b.key === 'kiln/ca-certificates');
  assert.ok(
    entry?.layers?.['ca-certificates']?.launch,
    'the CA layer is a launch layer of kiln/ca-certificates',
  );
  const contents = new Map<string, string>();
  const { readTar } = await import('../../src/layers/tar-reader.ts');
  for (const layer of await image.layers()) {
    for await (const e of readTar(await layer.uncompressed())) {
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c);
      if (e.header.type === 'file')
        contents.set(e.header.path.replace(/^\/+/, ''), Buffer.concat(chunks).toString('utf8'));
    }
  }
  const base = 'layers/kiln_ca-certificates/ca-certificates';
  assert.ok(
    contents.get(`${base}/ca-certificates.crt`)?.includes(caBodyOf(ca.caPem)),
    'the bundle holds the certificate',
  );
  assert.equal(
    contents.get(`${base}/env.launch/NODE_EXTRA_CA_CERTS.override`),
    `/${base}/ca-certificates.crt`,
  );
  const sbom = contents.get('layers/sbom/launch/kiln_ca-certificates/ca-certificates/sbom.cdx.json');
  assert.ok(sbom, 'the SBOM layer lists the certificates');
  assert.equal(JSON.parse(sbom).components[0].cryptoProperties.assetType, 'certificate');
});

function caBodyOf(pem: string): string {
  return pem.split('\n')[1]!;
}
