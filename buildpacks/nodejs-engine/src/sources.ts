import { join } from 'node:path';
import { readJsonIfExists, readTextIfExists } from '../../_shared/fsutil.ts';
import { normalizeRange, type VersionRequest } from './request.ts';

/** VersionSources is what the app declares about its Node.js version, highest priority first. */
export interface VersionSources {
  /** True when the app looks like a Node.js project at all. */
  readonly isNodeApp: boolean;
  /** Declared version requests, highest priority first (empty: use the default). */
  readonly requests: readonly VersionRequest[];
}

/**
 * readVersionSources reads BP_NODE_VERSION, package.json `engines.node`, `.nvmrc` and
 * `.node-version` (in that priority order, as other Node.js buildpacks do).
 */
export async function readVersionSources(appDir: string, env: NodeJS.ProcessEnv): Promise<VersionSources> {
  const requests: VersionRequest[] = [];
  if (env.BP_NODE_VERSION)
    requests.push({ range: normalizeRange(env.BP_NODE_VERSION), source: 'BP_NODE_VERSION' });
  const pkg = (await readJsonIfExists(join(appDir, 'package.json'))) as
    | { engines?: { node?: unknown } }
    | undefined;
  const engines = pkg?.engines?.node;
  if (typeof engines === 'string' && engines.trim()) {
    requests.push({ range: normalizeRange(engines), source: 'package.json engines.node' });
  }
  const nvmrc = await readTextIfExists(join(appDir, '.nvmrc'));
  if (nvmrc?.trim()) requests.push({ range: normalizeRange(nvmrc.split('\n')[0]!), source: '.nvmrc' });
  const nodeVersion = await readTextIfExists(join(appDir, '.node-version'));
  if (nodeVersion?.trim()) {
    requests.push({ range: normalizeRange(nodeVersion.split('\n')[0]!), source: '.node-version' });
  }
  return {
    isNodeApp: pkg !== undefined || nvmrc !== undefined || nodeVersion !== undefined,
    requests,
  };
}
