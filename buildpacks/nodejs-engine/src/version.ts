import semver from 'semver';
import type { VersionRequest } from './request.ts';

/** defaultVersion is the newest release of the newest even major (Node.js LTS lines are even). */
export function defaultVersion(versions: readonly string[]): string | undefined {
  const even = versions.filter((v) => semver.valid(v) && !semver.prerelease(v) && semver.major(v) % 2 === 0);
  return even.sort(semver.rcompare)[0];
}

/** pinnedVersion is the exact version a request names (`22.1.0`, `v22.1.0`), if it names one. */
export function pinnedVersion(request: VersionRequest): string | undefined {
  return request.range === undefined ? undefined : (semver.valid(request.range) ?? undefined);
}

/** resolveVersion picks the newest stable version satisfying the request. */
export function resolveVersion(versions: readonly string[], request: VersionRequest): string | undefined {
  const stable = versions.filter((v) => semver.valid(v) && !semver.prerelease(v));
  if (request.range === undefined) return defaultVersion(stable);
  if (!semver.validRange(request.range)) {
    throw new Error(`${request.source}: "${request.range}" is not a valid semver range`);
  }
  return semver.maxSatisfying(stable, request.range) ?? undefined;
}

/** newestSatisfyingEngines picks the newest stable version whose `engines.node` accepts `nodeVersion`. */
export function newestForNode(
  versions: readonly { version: string; engines?: Readonly<Record<string, string>> }[],
  nodeVersion: string,
): string | undefined {
  return versions
    .filter((v) => semver.valid(v.version) && !semver.prerelease(v.version))
    .filter((v) => {
      const range = v.engines?.node;
      return !range || semver.satisfies(nodeVersion, range);
    })
    .map((v) => v.version)
    .sort(semver.rcompare)[0];
}
