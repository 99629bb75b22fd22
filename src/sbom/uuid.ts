/**
 * contentUuid formats the first 32 hex digits of a digest as an RFC 4122 UUID: the version nibble
 * set, the variant bits `10`, everything else from the digest. A document's serial number or
 * namespace derived from its own content (or from the artifact it describes) is the same on every
 * build, which keeps SBOM layers and their image digests reproducible where a random UUID would
 * change them every time.
 *
 * Version 5 is what content-derived ids are; the launcher's SBOM has always carried the version 4
 * layout, and its bytes are in every app image's SBOM layer, so it asks for 4.
 */
export function contentUuid(digestHex: string, version: 4 | 5 = 5): string {
  const h = digestHex.toLowerCase().padEnd(32, '0').slice(0, 32);
  if (!/^[0-9a-f]{32}$/.test(h)) throw new Error(`contentUuid: not a hex digest: ${digestHex.slice(0, 40)}`);
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${version}${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
