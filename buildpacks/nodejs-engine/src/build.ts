import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { layerDir, previousLayer, resetLayer, writeEnv, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import {
  NO_REGISTRY,
  type NpmRegistry,
  npmRegistry,
  type Packument,
  type PackumentVersion,
} from '../../_shared/npm-registry.ts';
import {
  type CachedPackument,
  cachedPackument,
  describeSource,
  type Verdict,
} from '../../_shared/packument-cache.ts';
import { readBuildpackPlan } from '../../_shared/plan.ts';
import { readToml } from '../../_shared/toml.ts';
import { mayBuildNativeAddons } from './native-addons.ts';
import { nodePackageFor } from './node-package.ts';
import { quickForm, quickPinned, quickResolve } from './quick-version.ts';
import type { VersionRequest } from './request.ts';
import { readVersionSources } from './sources.ts';

const TOOL = { name: 'kiln/nodejs-engine', version: '0.1.0' };

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  const descriptor = await readToml(join(ctx.buildpackDir, 'buildpack.toml'));
  const nodePackage = nodePackageFor(descriptor?.metadata, ctx.env.CNB_TARGET_ARCH);
  const plan = await readBuildpackPlan(ctx.planPath);
  const wantsNpm = plan.some((e) => e.name === 'npm');
  const wantsHeaders = await mayBuildNativeAddons(ctx.appDir);

  const registry = await npmRegistry(ctx.env, ctx.platformDir, ctx.appDir);
  if (!registry) throw new BuildpackFailure(NO_REGISTRY);

  const sources = await readVersionSources(ctx.appDir, ctx.env);
  const request: VersionRequest = sources.requests[0] ?? { range: undefined, source: 'default (newest LTS)' };
  // Plain requests (none, a major, an exact version) resolve without semver; other ranges load it
  // (and an invalid one is the user's mistake, said before any request).
  const semverTools = () => import('./version.ts');
  if (!quickForm(request)) {
    try {
      (await semverTools()).resolveVersion([], request);
    } catch (err) {
      throw new BuildpackFailure((err as Error).message);
    }
  }
  // Resolved once per document: the cache's verdict and the build use the same answer.
  const resolved = new Map<Packument, string | undefined>();
  const resolveIn = async (p: Packument): Promise<string | undefined> => {
    if (!resolved.has(p)) {
      const keys = Object.keys(p.versions);
      const quick = quickResolve(keys, request);
      resolved.set(p, quick ? quick.version : (await semverTools()).resolveVersion(keys, request));
    }
    return resolved.get(p);
  };
  const pinned = quickForm(request) ? quickPinned(request) : (await semverTools()).pinnedVersion(request);
  const metadata = new MetadataCache(ctx.layersDir, registry, ctx.env);
  let found: CachedPackument;
  try {
    found = await metadata.packument(nodePackage, async (p) => {
      // A pinned version the copy has is final (a published version never changes); otherwise the
      // copy serves only while fresh, and a request it cannot meet asks the registry (a newer
      // release may have come out since).
      const version = await resolveIn(p);
      if (version === undefined) return 'refresh';
      return version === pinned ? 'use' : 'if-fresh';
    });
  } catch (err) {
    // Offline (e.g. --network none): a cached Node.js that still satisfies the request is used.
    // Not on TLS failures: those are reported (an untrusted certificate needs the user's attention).
    const why = (err as Error).message;
    if (
      why.includes('network unavailable') &&
      (await reuseOffline(ctx.layersDir, request, { npm: wantsNpm, headers: wantsHeaders }, why))
    ) {
      await metadata.keep();
      return 0;
    }
    // Nothing cached fits: the build image's Node.js, when it meets the request (else a clear error).
    if (why.includes('network unavailable')) {
      const { useBuilderNode } = await import('./builder-node.ts');
      await useBuilderNode(ctx.layersDir, request, wantsNpm, why, ctx.env);
      await metadata.keep();
      return 0;
    }
    throw new BuildpackFailure(`reading the Node.js versions (${nodePackage}): ${(err as Error).message}`);
  }
  log(`Node.js versions (${nodePackage}) ${describeSource(found)}`);
  const version = await resolveIn(found.packument);
  if (!version) {
    throw new BuildpackFailure(
      `no Node.js version in ${nodePackage} satisfies "${request.range}" from ${request.source}`,
    );
  }
  const meta = found.packument.versions[version]!;
  log(`Node.js ${version} (${request.source}: ${request.range ?? 'newest LTS'})`);

  await contributeNode(ctx.layersDir, registry, nodePackage, meta, ctx.env, wantsHeaders);
  if (wantsNpm) await contributeNpm(ctx.layersDir, registry, version, metadata, ctx.env);
  await metadata.keep();
  return 0;
});

/** METADATA_LAYER caches registry metadata between builds: cache only, never in the image. */
const METADATA_LAYER = 'registry-metadata';
const METADATA_TYPES = { build: false, cache: true, launch: false };

/** MetadataCache reads registry documents through the cache layer and keeps that layer. */
class MetadataCache {
  readonly #layersDir: string;
  readonly #registry: NpmRegistry;
  readonly #env: NodeJS.ProcessEnv;
  constructor(layersDir: string, registry: NpmRegistry, env: NodeJS.ProcessEnv) {
    this.#layersDir = layersDir;
    this.#registry = registry;
    this.#env = env;
  }

  /** packument reads a package's document through the cache (see cachedPackument). */
  packument(name: string, verdict: (p: Packument) => Verdict | Promise<Verdict>): Promise<CachedPackument> {
    return cachedPackument(this.#registry, name, {
      env: this.#env,
      dir: layerDir(this.#layersDir, METADATA_LAYER),
      now: Date.now,
      verdict,
    });
  }

  /** keep declares the layer again (an undeclared cache layer is dropped after the build). */
  async keep(): Promise<void> {
    if (await exists(layerDir(this.#layersDir, METADATA_LAYER))) {
      await writeLayerToml(this.#layersDir, METADATA_LAYER, METADATA_TYPES, { format: 1 });
    }
  }
}

const NODE_TYPES = { build: true, launch: true, cache: true };
const HEADER_TYPES = { build: true, cache: true, launch: false };
const NPM_TYPES = { build: true, cache: true, launch: false };

/** reuseOffline keeps the cached layers when the registry is unreachable and they still fit. */
async function reuseOffline(
  layersDir: string,
  request: VersionRequest,
  wants: { readonly npm: boolean; readonly headers: boolean },
  why: string,
): Promise<boolean> {
  const node = await previousLayer(layersDir, 'node');
  const headers = await previousLayer(layersDir, 'node-headers');
  const npm = await previousLayer(layersDir, 'npm');
  const version = String(node?.metadata.version ?? '');
  if (!node?.hasContents || (wants.headers && !headers?.hasContents) || !version) return false;
  if (request.range !== undefined) {
    const { default: semver } = await import('semver');
    if (!semver.satisfies(version, request.range)) return false;
  }
  if (wants.npm && !npm?.hasContents) return false;
  log(`  the registry is unreachable (${why}); reusing the cached Node.js ${version}`);
  await writeLayerToml(layersDir, 'node', NODE_TYPES, node.metadata);
  if (wants.headers && headers)
    await writeLayerToml(layersDir, 'node-headers', HEADER_TYPES, headers.metadata);
  if (wants.npm && npm) await writeLayerToml(layersDir, 'npm', NPM_TYPES, npm.metadata);
  return true;
}

async function contributeNode(
  layersDir: string,
  registry: NpmRegistry,
  nodePackage: string,
  meta: PackumentVersion,
  env: NodeJS.ProcessEnv,
  wantsHeaders: boolean,
): Promise<void> {
  const metadata = { version: meta.version, integrity: meta.dist.integrity ?? '' };
  // The headers (include/, 65 MB, mostly OpenSSL) are only needed to compile native addons: they
  // live in a build + cache layer (HEADER_TYPES) that node-gyp finds through the npm layer's env,
  // made only for an app that may compile one (native-addons.ts); otherwise there is none, and
  // an undeclared cached one is dropped after the build.
  const prev = await previousLayer(layersDir, 'node');
  const prevHeaders = await previousLayer(layersDir, 'node-headers');
  const same = (p: typeof prev) =>
    p?.hasContents && p.metadata.version === metadata.version && p.metadata.integrity === metadata.integrity;
  if (same(prev) && (!wantsHeaders || same(prevHeaders))) {
    log(`  reusing the cached Node.js ${meta.version} layer`);
    await writeLayerToml(layersDir, 'node', NODE_TYPES, metadata);
    if (wantsHeaders) await writeLayerToml(layersDir, 'node-headers', HEADER_TYPES, metadata);
    return;
  }
  log(`  downloading ${nodePackage}@${meta.version}`);
  // Loaded only to download: a rebuild that reuses the layers never loads the HTTP client.
  const { installNode } = await import('./install.ts');
  const { integrityHex, writeSboms } = await import('../../_shared/sbom.ts');
  const dir = await resetLayer(layersDir, 'node');
  await installNode(registry, nodePackage, meta, dir, env);
  // Never in the node layer (a launch layer): moved to their own layer, or removed.
  if (wantsHeaders) {
    const headers = await resetLayer(layersDir, 'node-headers');
    if (await exists(join(dir, 'include'))) await rename(join(dir, 'include'), join(headers, 'include'));
    await writeLayerToml(layersDir, 'node-headers', HEADER_TYPES, metadata);
  } else await rm(join(dir, 'include'), { recursive: true, force: true });
  const sha512 = integrityHex(meta.dist.integrity);
  await writeSboms(
    join(layersDir, 'node'),
    [
      {
        name: 'node',
        version: meta.version,
        purl: `pkg:generic/node@${meta.version}`,
        type: 'application',
        ecosystem: 'binary',
        license: 'MIT',
        ...(sha512 ? { sha512 } : {}),
      },
    ],
    TOOL,
    env,
  );
  await writeLayerToml(layersDir, 'node', NODE_TYPES, metadata);
}

async function contributeNpm(
  layersDir: string,
  registry: NpmRegistry,
  nodeVersion: string,
  registryCache: MetadataCache,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const pinned = env.BP_NPM_VERSION;
  // npm only runs the build: the cached one is kept while the Node.js version is the same, which
  // spares reading npm's (large) registry document on every build.
  const cached = await previousLayer(layersDir, 'npm');
  if (!pinned && cached?.hasContents && cached.metadata.node === nodeVersion && cached.metadata.version) {
    log(`  reusing the cached npm ${String(cached.metadata.version)} layer`);
    await writeLayerToml(layersDir, 'npm', NPM_TYPES, cached.metadata);
    return;
  }
  const { default: semver } = await import('semver');
  const { newestForNode, resolveVersion } = await import('./version.ts');
  const exact = pinned ? semver.valid(pinned) : null;
  let packument: Packument;
  try {
    const found = await registryCache.packument('npm', (p) =>
      exact && p.versions[exact] ? 'use' : 'if-fresh',
    );
    log(`  npm versions ${describeSource(found)}`);
    packument = found.packument;
  } catch (err) {
    throw new BuildpackFailure(`reading the npm versions: ${(err as Error).message}`);
  }
  const version = pinned
    ? resolveVersion(Object.keys(packument.versions), { range: pinned, source: 'BP_NPM_VERSION' })
    : newestForNode(Object.values(packument.versions), nodeVersion);
  if (!version)
    throw new BuildpackFailure(
      `no npm version supports Node.js ${nodeVersion}${pinned ? ` and ${pinned}` : ''}`,
    );
  const meta = packument.versions[version]!;
  // npm is needed to build, not to run: a build + cache layer keeps it out of the app image.
  const metadata = { version, integrity: meta.dist.integrity ?? '', node: nodeVersion };
  if (
    cached?.hasContents &&
    cached.metadata.version === version &&
    cached.metadata.integrity === metadata.integrity
  ) {
    log(`  reusing the cached npm ${version} layer`);
    await writeLayerToml(layersDir, 'npm', NPM_TYPES, metadata);
    return;
  }
  log(`  downloading npm@${version}`);
  const { installNpm } = await import('./install.ts');
  const dir = await resetLayer(layersDir, 'npm');
  await installNpm(registry, meta, dir, env);
  // node-gyp (run by npm for native addons) must use the node-headers layer: without a nodedir it
  // downloads headers from the Node.js website. npm 11+ warns about unknown npm_config_* variables,
  // and its node-gyp reads npm_package_config_node_gyp_* instead.
  const nodedir = semver.major(version) >= 11 ? 'npm_package_config_node_gyp_nodedir' : 'npm_config_nodedir';
  await writeEnv(dir, 'env.build', nodedir, 'override', join(layersDir, 'node-headers'));
  await writeLayerToml(layersDir, 'npm', NPM_TYPES, metadata);
}
