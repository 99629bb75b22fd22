import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'smol-toml';
import { parseBuilderConfig, readBuilderConfig } from '../../src/builder/builder-config.ts';
import { BuilderLabel, createBuilder, readBuilder } from '../../src/builder/builder-image.ts';
import {
  builderKey,
  cachedBuilderKey,
  DEFAULT_BUILDER_CONFIG,
  ensureDefaultBuilder,
} from '../../src/builder/default-builder.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { readTar } from '../../src/layers/tar-reader.ts';
import { Layout } from '../../src/layout/layout.ts';
import type { Image, Layer } from '../../src/oci/image.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { ImageStore } from '../../src/store/store.ts';
import { etcFileLayer } from '../helpers/lifecycle.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
let tmp: string;

/** plain parses TOML into plain objects (smol-toml makes null-prototype tables). */
function plain(text: string): unknown {
  return JSON.parse(JSON.stringify(parse(text)));
}

before(async () => {
  execFileSync('bash', [path.join(ROOT, 'scripts/build.d/buildpacks.sh')], { stdio: 'inherit' });
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-builder-test-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A small but real build image: an /etc/passwd layer and the stack's config and labels. */
async function buildImage(layout: Layout): Promise<Image> {
  const passwd = Buffer.from('root:x:0:0:root:/root:/bin/bash\ncnb:x:1000:1000::/home/cnb:/bin/bash\n');
  const layer = await etcFileLayer(layout.blobs, 'passwd', passwd);
  return imageFrom({
    config: {
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: '1000:1000',
        Env: ['PATH=/usr/bin:/bin', 'CNB_USER_ID=1000', 'CNB_GROUP_ID=1000'],
        Labels: {
          'io.buildpacks.stack.id': 'io.kiln.stacks.bookworm',
          'io.buildpacks.base.id': 'io.kiln.stacks.bookworm',
        },
      },
    },
    layers: [layer],
  });
}

async function entriesOf(
  layer: Layer,
): Promise<Map<string, { mode: number; uid: number; gid: number; text?: string }>> {
  const out = new Map<string, { mode: number; uid: number; gid: number; text?: string }>();
  for await (const e of readTar(await layer.uncompressed())) {
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    const h = e.header;
    out.set(h.path.replace(/\/$/, ''), {
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      ...(h.type === 'file' && h.size < 100_000 ? { text: Buffer.concat(chunks).toString('utf8') } : {}),
    });
  }
  return out;
}

/** The default builder (DEFAULT_BUILDER_CONFIG) on a fresh build image in `layout`. */
async function defaultBuilder(layout: Layout) {
  const base = await buildImage(layout);
  const config = await readBuilderConfig(DEFAULT_BUILDER_CONFIG);
  return createBuilder(config, {
    buildImage: base,
    store: layout.blobs,
    kilnVersion: '0.1.0',
  });
}

describe('createBuilder()', () => {
  test('makes the default builder: one layer per buildpack, a config layer, the spec labels', async () => {
    const dir = path.join(tmp, 'layout-a');
    const layout = await Layout.init(dir);
    const { image } = await defaultBuilder(layout);
    await layout.writeImage(image, 'builder');

    const layers = await image.layers();
    assert.equal(layers.length, 1 + 8 + 1);
    const cfg = await image.configFile();
    assert.equal(cfg.config?.WorkingDir, '/layers');
    assert.equal(cfg.config?.User, '1000:1000');
    assert.ok(cfg.config?.Env?.includes('CNB_USER_ID=1000'));
    const labels = cfg.config?.Labels ?? {};
    assert.equal(labels[BuilderLabel.StackId], 'io.kiln.stacks.bookworm');

    // Buildpack layers, sorted by id: go, java, node-start, nodejs-engine, npm-install, procfile, python, ruby.
    const ids = [
      'kiln/go',
      'kiln/java',
      'kiln/node-start',
      'kiln/nodejs-engine',
      'kiln/npm-install',
      'kiln/procfile',
      'kiln/python',
      'kiln/ruby',
    ];
    const layersLabel = JSON.parse(labels[BuilderLabel.Layers]!) as Record<
      string,
      Record<string, { api: string; layerDiffID: string }>
    >;
    for (const [i, id] of ids.entries()) {
      const layer = layers[1 + i]!;
      const entries = await entriesOf(layer);
      const top = `cnb/buildpacks/${id.replace('/', '_')}/0.1.0`;
      assert.deepEqual(entries.get('cnb'), { mode: 0o755, uid: 0, gid: 0 }, `${id}: /cnb`);
      assert.equal(entries.get(`${top}/bin/detect`)?.mode, 0o755, `${id}: bin/detect is executable`);
      assert.equal(entries.get(`${top}/bin/build`)?.uid, 0);
      assert.equal(entries.get(`${top}/buildpack.toml`)?.mode, 0o644);
      assert.match(entries.get(`${top}/buildpack.toml`)?.text ?? '', new RegExp(`id = "${id}"`));
      assert.equal(layersLabel[id]?.['0.1.0']?.api, '0.12');
      assert.equal(layersLabel[id]?.['0.1.0']?.layerDiffID, await layer.diffID());
    }

    const own = await entriesOf(layers[9]!);
    const order = parse(own.get('cnb/order.toml')!.text!) as {
      order: { group: { id: string; optional?: boolean }[] }[];
    };
    assert.deepEqual(
      order.order.map((g) => g.group.map((e) => `${e.id}${e.optional ? '?' : ''}`)),
      [
        ['kiln/nodejs-engine', 'kiln/npm-install', 'kiln/node-start?', 'kiln/procfile?'],
        ['kiln/nodejs-engine', 'kiln/node-start?', 'kiln/procfile?'],
        ['kiln/go', 'kiln/procfile?'],
        ['kiln/java', 'kiln/procfile?'],
        ['kiln/python', 'kiln/procfile?'],
        ['kiln/ruby', 'kiln/procfile?'],
        ['kiln/procfile'],
      ],
    );
    // Every run-image flavour, the default first (the stack.toml run image is the default's).
    assert.deepEqual(plain(own.get('cnb/run.toml')!.text!), {
      images: [
        { image: 'kiln/stacks/bookworm/run', mirrors: [] },
        { image: 'kiln/stacks/bookworm/run-shell', mirrors: [] },
      ],
    });
    assert.deepEqual(plain(own.get('cnb/stack.toml')!.text!), {
      'run-image': { image: 'kiln/stacks/bookworm/run', mirrors: [] },
    });
    assert.deepEqual(own.get('workspace'), { mode: 0o755, uid: 1000, gid: 1000 });
    assert.deepEqual(own.get('layers'), { mode: 0o755, uid: 1000, gid: 1000 });

    const info = await readBuilder(image, 'builder');
    assert.deepEqual(
      info.buildpacks.map((b) => b.id),
      ids,
    );
    assert.deepEqual(info.runImages, [
      { image: 'kiln/stacks/bookworm/run', mirrors: [] },
      { image: 'kiln/stacks/bookworm/run-shell', mirrors: [] },
    ]);
    assert.equal(info.createdBy.name, 'kiln');
    // No /cnb/lifecycle in a kiln builder, so its label lists no lifecycle APIs (pack refuses it up front).
    assert.deepEqual(info.lifecycle, { version: '', buildpackApis: [], platformApis: [] });
    const layerPaths: string[] = [];
    for (const l of await image.layers())
      for await (const e of readTar(await l.uncompressed()))
        layerPaths.push(e.header.path.replace(/^\.?\//, ''));
    assert.ok(!layerPaths.some((p) => p.startsWith('cnb/lifecycle')), 'no /cnb/lifecycle');
    assert.equal(info.order.length, 7);

    // Another tool reads it: skopeo sees the labels in the layout kiln wrote.
    const inspected = JSON.parse(
      execFileSync('skopeo', ['inspect', `oci:${dir}:builder`], { encoding: 'utf8' }),
    ) as {
      Labels: Record<string, string>;
      Layers: string[];
    };
    assert.equal(inspected.Layers.length, 10);
    assert.ok(inspected.Labels[BuilderLabel.Metadata]);
  });

  test('is reproducible: the same inputs in another store give the same digest', async () => {
    const digests: string[] = [];
    for (const name of ['repro-1', 'repro-2']) {
      const layout = await Layout.init(path.join(tmp, name));
      const { image } = await defaultBuilder(layout);
      digests.push(await image.digest());
    }
    assert.equal(digests[0], digests[1]);
  });

  test('rejects an order naming a buildpack the builder lacks, naming the group', async () => {
    const layout = await Layout.init(path.join(tmp, 'bad-order'));
    const file = path.join(path.dirname(DEFAULT_BUILDER_CONFIG), 'bad.toml');
    const config = parseBuilderConfig(
      `[[buildpacks]]\nuri = "../../dist/buildpacks/procfile"\n[[order]]\n[[order.group]]\nid = "kiln/missing"\n[[run.images]]\nimage = "r"\n`,
      file,
    );
    await assert.rejects(
      createBuilder(config, {
        buildImage: await buildImage(layout),
        store: layout.blobs,
        kilnVersion: '0.1.0',
      }),
      (e: unknown) =>
        e instanceof KilnError &&
        /order\[0\]\.group\[0\]: buildpack kiln\/missing is not in \[\[buildpacks\]\]/.test(e.message),
    );
  });

  test('rejects a builder config without a run image', () => {
    assert.throws(
      () => parseBuilderConfig('[[order]]\n[[order.group]]\nid = "a"\n', 'x/builder.toml'),
      /run image missing/,
    );
  });

  test('carries [[extensions]] into /cnb/extensions and [[order-extensions]] into /cnb/order.toml', async () => {
    const layout = await Layout.init(path.join(tmp, 'ext'));
    const ext = path.join(tmp, 'ext-curl');
    await mkdir(path.join(ext, 'bin'), { recursive: true });
    await writeFile(
      path.join(ext, 'extension.toml'),
      'api = "0.10"\n[extension]\nid = "samples/curl"\nversion = "0.0.1"\n',
    );
    await writeFile(path.join(ext, 'bin', 'generate'), '#!/bin/sh\n', { mode: 0o755 });
    const bpDir = path.join(ROOT, 'dist', 'buildpacks', 'procfile');
    const toml = (extOrder: string) =>
      `[[buildpacks]]\nuri = "${bpDir}"\n[[extensions]]\nuri = "${ext}"\n[[order]]\n[[order.group]]\nid = "kiln/procfile"\n[[run.images]]\nimage = "r"\n${extOrder}`;
    const config = parseBuilderConfig(
      toml('[[order-extensions]]\n[[order-extensions.group]]\nid = "samples/curl"\noptional = true\n'),
      path.join(tmp, 'builder.toml'),
    );
    const { image } = await createBuilder(config, {
      buildImage: await buildImage(layout),
      store: layout.blobs,
      kilnVersion: '0.1.0',
    });
    const layers = await image.layers();
    const extEntries = await entriesOf(layers[layers.length - 2]!);
    assert.equal(extEntries.get('cnb/extensions/samples_curl/0.0.1/bin/generate')?.mode, 0o755);
    assert.match(
      extEntries.get('cnb/extensions/samples_curl/0.0.1/extension.toml')?.text ?? '',
      /samples\/curl/,
    );
    const own = await entriesOf(layers[layers.length - 1]!);
    assert.deepEqual(
      (plain(own.get('cnb/order.toml')!.text!) as Record<string, unknown>)['order-extensions'],
      [{ group: [{ id: 'samples/curl', version: '0.0.1', optional: true }] }],
    );
    const labels = (await image.configFile()).config?.Labels ?? {};
    assert.ok(JSON.parse(labels[BuilderLabel.ExtensionLayers]!)['samples/curl']['0.0.1'].layerDiffID);
    // An order-extensions entry the builder does not carry is named.
    await assert.rejects(
      createBuilder(
        parseBuilderConfig(
          toml('[[order-extensions]]\n[[order-extensions.group]]\nid = "samples/vim"\n'),
          path.join(tmp, 'builder.toml'),
        ),
        { buildImage: await buildImage(layout), store: layout.blobs, kilnVersion: '0.1.0' },
      ),
      /order-extensions\[0\]\.group\[0\]: extension samples\/vim is not in \[\[extensions\]\]/,
    );
  });

  test('writes [[build.env]] into /cnb/build-config/env', async () => {
    const layout = await Layout.init(path.join(tmp, 'env'));
    const bpDir = path.join(ROOT, 'dist', 'buildpacks', 'procfile');
    const config = parseBuilderConfig(
      `[[buildpacks]]\nuri = "${bpDir}"\n[[order]]\n[[order.group]]\nid = "kiln/procfile"\n[[run.images]]\nimage = "r"\nmirrors = ["m"]\n[[build.env]]\nname = "BP_X"\nvalue = "1"\nsuffix = "override"\n`,
      path.join(tmp, 'builder.toml'),
    );
    const { image } = await createBuilder(config, {
      buildImage: await buildImage(layout),
      store: layout.blobs,
      kilnVersion: '0.1.0',
    });
    const layers = await image.layers();
    const own = await entriesOf(layers[layers.length - 1]!);
    assert.equal(own.get('cnb/build-config/env/BP_X.override')?.text, '1');
    assert.deepEqual(plain(own.get('cnb/run.toml')!.text!), { images: [{ image: 'r', mirrors: ['m'] }] });
  });
});

describe('ensureDefaultBuilder()', () => {
  test('creates the default builder once and reuses it while its inputs are unchanged', async () => {
    const store = await ImageStore.open(path.join(tmp, 'store'));
    const base = await buildImage(store.layout);
    let asked = 0;
    const opts = {
      store,
      kilnVersion: '0.1.0',
      buildImage: async () => {
        asked++;
        return base;
      },
    };
    const first = await ensureDefaultBuilder(opts);
    assert.equal(first.created, true);
    const second = await ensureDefaultBuilder(opts);
    assert.equal(second.created, false);
    assert.equal(await second.image.digest(), await first.image.digest());
    assert.equal(asked, 2);

    // A changed builder config (same buildpacks) gives a new key and a new builder.
    const copy = path.join(tmp, 'builders', 'bookworm');
    await mkdir(copy, { recursive: true });
    const text = (await readBuilderConfig(DEFAULT_BUILDER_CONFIG)).text.replaceAll(
      '../../dist',
      path.join(ROOT, 'dist'),
    );
    await writeFile(
      path.join(copy, 'builder.toml'),
      text.replace('kiln default builder', 'kiln test builder'),
    );
    const third = await ensureDefaultBuilder({ ...opts, configFile: path.join(copy, 'builder.toml') });
    assert.equal(third.created, true);
    assert.notEqual(third.key, first.key);
  });

  test('cachedBuilderKey() remembers the key until the config, a buildpack file or the build image changes', async () => {
    const store = await ImageStore.open(path.join(tmp, 'store-key'));
    const base = await buildImage(store.layout);
    // A config of its own whose buildpacks are the bundled ones, one of them copied (to edit it).
    const dir = path.join(tmp, 'key-cache');
    await mkdir(dir, { recursive: true });
    const config = await readBuilderConfig(DEFAULT_BUILDER_CONFIG);
    const first = config.buildpacks[0]!.dir;
    const copied = path.join(dir, 'bp');
    execFileSync('cp', ['-a', first, copied]);
    let text = config.text.replaceAll('../../dist', path.join(ROOT, 'dist'));
    text = text.replace(path.join(ROOT, 'dist', path.relative(path.join(ROOT, 'dist'), first)), copied);
    const cfg = path.join(dir, 'builder.toml');
    await writeFile(cfg, text);
    assert.equal((await readBuilderConfig(cfg)).buildpacks[0]!.dir, copied);
    const memo = path.join(dir, 'cache', 'key.json');
    const tamper = async () => {
      const m = JSON.parse(await readFile(memo, 'utf8'));
      await writeFile(memo, JSON.stringify({ ...m, key: 'sha256:remembered' }));
    };

    const k1 = await cachedBuilderKey(cfg, base, undefined, memo);
    assert.equal(k1, await builderKey(cfg, base, undefined));
    await tamper();
    assert.equal(await cachedBuilderKey(cfg, base, undefined, memo), 'sha256:remembered');
    // Another epoch, an edited buildpack file, an edited config: computed afresh.
    assert.equal(await cachedBuilderKey(cfg, base, 5, memo), await builderKey(cfg, base, 5));
    await tamper();
    await appendFile(path.join(copied, 'buildpack.toml'), '\n# edited\n');
    const k2 = await cachedBuilderKey(cfg, base, 5, memo);
    assert.equal(k2, await builderKey(cfg, base, 5));
    assert.notEqual(k2, 'sha256:remembered');
    await tamper();
    await appendFile(cfg, '\n# edited\n');
    assert.equal(await cachedBuilderKey(cfg, base, 5, memo), await builderKey(cfg, base, 5));
  });
});
