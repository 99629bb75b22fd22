// Test inputs for the lifecycle and builder tests: a launcher record and a stored /etc layer
// (see cnb-images.ts for whole in-memory CNB images).

import { writeLayer } from '../../src/layers/layer-writer.ts';
import type { StoredLayer } from '../../src/layout/blob-layer.ts';
import type { BlobStore } from '../../src/layout/blob-store.ts';
import { fileEntry } from './tar-entries.ts';

/** A launcher record for a test binary (the exporter only reads path, sha256 and version). */
export function launcherAt(file: string) {
  return {
    name: 'launcher',
    version: '0.0.0-test',
    sha256: '7e57'.repeat(16),
    size: 1,
    arch: 'amd64',
    musl: { package: 'musl-dev', source: 'musl', version: '1', arch: 'amd64', distro: 'debian-12' },
    path: file,
  };
}

/**
 * etcFileLayer writes to `store` a gzip layer holding only /etc (0755) and /etc/`name` (0644)
 * with `content`, both root-owned; `epoch` is every entry's mtime (the writer's default if unset).
 */
export function etcFileLayer(
  store: BlobStore,
  name: string,
  content: string | Buffer,
  epoch?: number,
): Promise<StoredLayer> {
  return writeLayer(
    [{ path: 'etc', type: 'dir', mode: 0o755, uid: 0, gid: 0 }, fileEntry(`etc/${name}`, content)],
    epoch === undefined ? { store } : { store, epoch },
  );
}
