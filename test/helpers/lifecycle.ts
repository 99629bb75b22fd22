// Test inputs for the lifecycle phases that are not images (see cnb-images.ts for those).

/** A launcher record for a test binary (the exporter only reads path, sha256 and version). */
export function launcherAt(file: string) {
  return {
    name: 'launcher',
    version: '0.0.0-test',
    sha256: 'test',
    size: 1,
    arch: 'amd64',
    musl: { package: 'musl-dev', source: 'musl', version: '1', arch: 'amd64', distro: 'debian-12' },
    path: file,
  };
}
