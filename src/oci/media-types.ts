/** Media types of the OCI image spec and Docker's schema 2, the two families registries speak. */
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

export type MediaTypeName = (typeof MediaType)[keyof typeof MediaType];

/** isIndexMediaType tells whether a manifest media type names a multi-platform index. */
export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

/** isImageMediaType tells whether a manifest media type names a single-platform image manifest. */
export function isImageMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

/** Compression of a layer blob, derived from its media type. */
export type Compression = 'none' | 'gzip' | 'zstd';

/** compressionOf maps a layer media type to the compression its blob uses. */
export function compressionOf(mt: string): Compression {
  if (mt.endsWith('+zstd') || mt.endsWith('.zstd')) return 'zstd';
  if (mt.endsWith('+gzip') || mt.endsWith('.gzip') || mt === MediaType.DockerLayerGzip) return 'gzip';
  return 'none';
}

/** layerMediaType is the OCI media type of a layer compressed with `c`. */
export function layerMediaType(c: Compression): string {
  if (c === 'gzip') return MediaType.OciLayerGzip;
  if (c === 'zstd') return MediaType.OciLayerZstd;
  return MediaType.OciLayer;
}

/** Accept header for manifest requests: every manifest and index type we understand. */
export const MANIFEST_ACCEPT = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
].join(', ');
