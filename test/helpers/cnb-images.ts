// Test helper: small, real CNB images built in memory — run images with base labels and app
// images carrying the reference lifecycle's labels on top of them — for inspect and rebase tests.
// Layers are real gzip tar blobs made by kiln's normalizing tar writer.

import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { tarChunks } from '../../src/layers/tar-writer.ts';
import type { Image, Layer } from '../../src/oci/image.ts';
import { MediaType } from '../../src/oci/media-types.ts';
import { bytesLayer, imageFrom } from '../../src/oci/memory.ts';

/**
 * tarLayer makes a gzip layer holding `files` (path -> content) under parent dirs; Buffer
 * contents are written executable (0755), strings 0644.
 */
export async function tarLayer(files: Readonly<Record<string, string | Buffer>>): Promise<Layer> {
  const entries = [];
  const dirs = new Set<string>();
  for (const p of Object.keys(files)) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of dirs) entries.push({ path: d, type: 'dir' as const, mode: 0o755, uid: 0, gid: 0 });
  for (const [p, body] of Object.entries(files)) {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
    entries.push({
      path: p,
      type: 'file' as const,
      mode: Buffer.isBuffer(body) ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      size: buf.length,
      open: () => Readable.from([buf]),
      read: async () => buf,
    });
  }
  const chunks: Buffer[] = [];
  for await (const c of tarChunks(entries)) chunks.push(c);
  const tar = Buffer.concat(chunks);
  return bytesLayer({ blob: gzipSync(tar), tar, mediaType: MediaType.OciLayerGzip });
}

/** Options of runImage. */
export interface RunImageOptions {
  /** Distinguishes versions: a different tag gives different layer content. */
  readonly patch: string;
  readonly arch?: string;
  readonly distro?: { name: string; version: string };
  readonly baseId?: string;
  readonly rebasable?: boolean;
  readonly layers?: number;
}

/** runImage makes a run image with `layers` layers and the CNB base labels. */
export async function runImage(o: RunImageOptions): Promise<Image> {
  const layers: Layer[] = [];
  for (let i = 0; i < (o.layers ?? 2); i++)
    layers.push(await tarLayer({ [`usr/lib/base-${i}.txt`]: `base layer ${i}, patch ${o.patch}\n` }));
  const distro = o.distro ?? { name: 'debian', version: '12' };
  const labels: Record<string, string> = {
    'io.buildpacks.base.distro.name': distro.name,
    'io.buildpacks.base.distro.version': distro.version,
    'io.buildpacks.base.id': o.baseId ?? 'io.kiln.stacks.bookworm',
    'io.buildpacks.stack.id': o.baseId ?? 'io.kiln.stacks.bookworm',
    'io.buildpacks.base.released': `patch-${o.patch}`,
    'org.opencontainers.image.version': o.patch,
  };
  if (o.rebasable !== undefined) labels['io.buildpacks.rebasable'] = String(o.rebasable);
  return imageFrom({
    config: {
      architecture: o.arch ?? 'amd64',
      os: 'linux',
      created: '1980-01-01T00:00:01Z',
      config: { User: '1001:1001', Env: ['PATH=/usr/bin:/bin'], Labels: labels },
      history: layers.map((_, i) => ({
        created: '1980-01-01T00:00:01Z',
        created_by: `run ${o.patch} layer ${i}`,
      })),
    },
    layers,
  });
}

/** Options of appImage. */
export interface AppImageOptions {
  readonly run: Image;
  readonly runImageName: string;
  readonly runImageReference: string;
  readonly mirrors?: readonly string[];
  /** Extra bytes in the app layer (to make big app images). */
  readonly appPadding?: number;
  readonly rebasable?: boolean;
}

/**
 * appImage stacks a buildpack layer, an SBOM layer, an app layer and a config layer on `run`
 * and writes the lifecycle, build and project labels as the reference exporter does.
 */
export async function appImage(o: AppImageOptions): Promise<Image> {
  const runCfg = await o.run.configFile();
  const topLayer = runCfg.rootfs.diff_ids.at(-1)!;
  const node = await tarLayer({ 'layers/kiln_nodejs-engine/node/bin/node': 'not really node\n' });
  const cdx = {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    components: [
      { type: 'library', name: 'express', version: '4.21.2', purl: 'pkg:npm/express@4.21.2' },
      { type: 'library', name: 'accepts', version: '1.3.8', purl: 'pkg:npm/accepts@1.3.8' },
    ],
  };
  const spdx = {
    spdxVersion: 'SPDX-2.3',
    packages: [
      {
        name: 'express',
        externalRefs: [{ referenceType: 'purl', referenceLocator: 'pkg:npm/express@4.21.2' }],
      },
      {
        name: 'accepts',
        externalRefs: [{ referenceType: 'purl', referenceLocator: 'pkg:npm/accepts@1.3.8' }],
      },
    ],
  };
  const nodeCdx = {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    components: [{ type: 'application', name: 'node', version: '22.11.0', purl: 'pkg:generic/node@22.11.0' }],
  };
  const sbom = await tarLayer({
    'layers/sbom/launch/kiln_npm-install/node_modules/sbom.cdx.json': JSON.stringify(cdx),
    'layers/sbom/launch/kiln_npm-install/node_modules/sbom.spdx.json': JSON.stringify(spdx),
    'layers/sbom/launch/kiln_nodejs-engine/node/sbom.cdx.json': JSON.stringify(nodeCdx),
  });
  const app = await tarLayer({
    'workspace/server.js': 'require("express")().listen(8080)\n',
    ...(o.appPadding ? { 'workspace/padding.bin': 'x'.repeat(o.appPadding) } : {}),
  });
  const config = await tarLayer({ 'layers/config/metadata.toml': '[[processes]]\ntype = "web"\n' });
  const layers = [...(await o.run.layers()), node, sbom, app, config];
  const lifecycle = {
    app: [{ sha: await app.diffID() }],
    sbom: { sha: await sbom.diffID() },
    config: { sha: await config.diffID() },
    launcher: { sha: '' },
    'process-types': { sha: '' },
    buildpacks: [
      {
        key: 'kiln/nodejs-engine',
        version: '1.0.0',
        layers: {
          node: {
            sha: await node.diffID(),
            data: { version: '22.11.0' },
            launch: true,
            build: true,
            cache: false,
          },
        },
        store: { metadata: {} },
      },
    ],
    runImage: {
      topLayer,
      reference: o.runImageReference,
      image: o.runImageName,
      ...(o.mirrors ? { mirrors: [...o.mirrors] } : {}),
    },
    stack: { runImage: { image: o.runImageName, ...(o.mirrors ? { mirrors: [...o.mirrors] } : {}) } },
  };
  const build = {
    bom: [],
    buildpacks: [
      { id: 'kiln/nodejs-engine', version: '1.0.0', homepage: 'https://github.com/kiln/buildpacks' },
      { id: 'kiln/npm-install', version: '1.0.0' },
    ],
    launcher: { version: '0.1.0', source: { git: { repository: 'kiln', commit: 'abc' } } },
    processes: [
      {
        type: 'web',
        command: ['node', 'server.js'],
        args: [],
        direct: true,
        buildpackID: 'kiln/node-start',
        'working-dir': '/workspace',
      },
      {
        type: 'worker',
        command: ['node'],
        args: ['worker.js', '--queue', 'a b'],
        direct: true,
        buildpackID: 'kiln/procfile',
      },
    ],
    'buildpack-default-process-type': 'web',
  };
  const labels: Record<string, string> = {
    ...(runCfg.config?.Labels ?? {}),
    'io.buildpacks.lifecycle.metadata': JSON.stringify(lifecycle),
    'io.buildpacks.build.metadata': JSON.stringify(build),
    'io.buildpacks.project.metadata': JSON.stringify({
      source: { type: 'project', version: { declared: '1.0' } },
    }),
    'com.example.team': 'web',
  };
  if (o.rebasable !== undefined) labels['io.buildpacks.rebasable'] = String(o.rebasable);
  return imageFrom({
    config: {
      ...runCfg,
      config: {
        ...runCfg.config,
        Entrypoint: ['/cnb/process/web'],
        Env: [
          'CNB_LAYERS_DIR=/layers',
          'CNB_APP_DIR=/workspace',
          'PATH=/cnb/process:/cnb/lifecycle:/usr/bin:/bin',
        ],
        WorkingDir: '/workspace',
        Labels: labels,
      },
      history: [
        ...(runCfg.history ?? []),
        ...['node', 'sbom', 'app', 'config'].map((n) => ({
          created: '1980-01-01T00:00:01Z',
          created_by: `kiln: ${n}`,
        })),
      ],
    },
    layers,
  });
}
