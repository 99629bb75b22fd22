import { createHash } from 'node:crypto';

/** Digest is an OCI content digest such as `sha256:<64 hex>`. Only sha256 is produced; sha512 is read. */
export type Digest = `sha256:${string}` | `sha512:${string}`;

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** isDigest tells whether `s` is a well-formed digest this project can verify. */
export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

/** parseDigest returns `s` as a Digest or throws a TypeError naming `what`. */
export function parseDigest(s: string, what = 'digest'): Digest {
  if (!isDigest(s))
    throw new TypeError(`invalid ${what}: expected sha256:<64 hex>, got "${String(s).slice(0, 80)}"`);
  return s;
}

/** sha256 digests bytes held in memory (manifests, configs: small by construction). */
export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** hexOf returns the hex part of a digest (the blob's file name in a layout). */
export function hexOf(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

/** algorithmOf returns the algorithm part of a digest. */
export function algorithmOf(d: Digest): 'sha256' | 'sha512' {
  return d.slice(0, d.indexOf(':')) as 'sha256' | 'sha512';
}
