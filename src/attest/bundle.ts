import { KilnError } from '../internal/errors.ts';
import type { Envelope } from './dsse.ts';
import type { VerificationMaterial } from './signer.ts';

// The sigstore bundle v0.3 (protobuf-specs, JSON form) around one DSSE envelope: what
// `cosign verify-attestation --new-bundle-format`, sigstore-js and GitHub's attestations read.
// A key-pair bundle carries a public key hint and no transparency-log entry.

export const BUNDLE_V03_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** The referrer annotation naming the attested predicate type (as sigstore-js/oci writes it). */
export const PREDICATE_TYPE_ANNOTATION = 'dev.sigstore.bundle.predicateType';
/** The referrer annotation naming the bundle's content kind. */
export const BUNDLE_CONTENT_ANNOTATION = 'dev.sigstore.bundle.content';

export interface Bundle {
  readonly mediaType: typeof BUNDLE_V03_MEDIA_TYPE;
  readonly verificationMaterial: Readonly<Record<string, unknown>>;
  readonly dsseEnvelope: Envelope;
}

/** bundleOf wraps a signed envelope with what a verifier needs to know about the signer. */
export function bundleOf(envelope: Envelope, material: VerificationMaterial): Bundle {
  const vm =
    material.kind === 'publicKey'
      ? { publicKey: { hint: material.hint } }
      : { x509CertificateChain: { certificates: material.certificates.map((rawBytes) => ({ rawBytes })) } };
  return {
    mediaType: BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial: { ...vm, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
    dsseEnvelope: envelope,
  };
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * parseBundle reads a bundle a registry handed over (untrusted: shape checked, nothing else).
 * Checked by hand, not with a zod schema: `kiln verify` parses a few bundles once per process,
 * and building and compiling the schema cost more than the check (about 8 ms of a ~120 ms run).
 */
export function parseBundle(bytes: Uint8Array, what: string): Bundle {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new KilnError(`${what}: not JSON`);
  }
  const bad = () => new KilnError(`${what}: not a sigstore bundle v0.3 with a DSSE envelope`);
  if (!isObject(v) || v.mediaType !== BUNDLE_V03_MEDIA_TYPE || !isObject(v.verificationMaterial)) throw bad();
  const env = v.dsseEnvelope;
  if (
    !isObject(env) ||
    typeof env.payload !== 'string' ||
    typeof env.payloadType !== 'string' ||
    !Array.isArray(env.signatures) ||
    env.signatures.length < 1 ||
    env.signatures.length > 16 ||
    !B64.test(env.payload)
  )
    throw bad();
  const signatures = (env.signatures as unknown[]).map((x) => {
    if (!isObject(x) || typeof x.sig !== 'string' || !B64.test(x.sig)) throw bad();
    if (x.keyid !== undefined && typeof x.keyid !== 'string') throw bad();
    return { ...x, sig: x.sig, keyid: x.keyid ?? '' };
  });
  return { ...v, dsseEnvelope: { ...env, signatures } } as unknown as Bundle;
}
