import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';

// Who signs. A Signer is handed in by the command that holds the key (it never leaves kiln's own
// process: buildpacks run in the sandbox long before and never see it). Key-pair signing is the one
// implementation today; keyless signing (a Fulcio certificate for an OIDC identity, logged in
// Rekor) would be another Signer whose `material` is a certificate chain instead of a key hint.

/** What a verifier needs to know about the signer, as a sigstore bundle carries it. */
export type VerificationMaterial =
  | { readonly kind: 'publicKey'; readonly hint: string }
  | { readonly kind: 'x509CertificateChain'; readonly certificates: readonly string[] };

export interface Signer {
  /** The key id in DSSE envelopes and bundle hints (sha256 of the public key's DER, hex). */
  readonly keyId: string;
  readonly material: VerificationMaterial;
  /** Signs `data` (ECDSA over its SHA-256, ASN.1 DER signature). */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** A public key a verifier checks signatures with. */
export interface SignatureCheck {
  readonly keyId: string;
  verify(data: Uint8Array, signature: Uint8Array): boolean;
}

/** keyIdOf is the hex sha256 of a public key's SubjectPublicKeyInfo DER. */
export function keyIdOf(pub: KeyObject): string {
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** keySigner signs with an ECDSA private key held in this process only. */
export function keySigner(privateKey: KeyObject): Signer {
  const keyId = keyIdOf(createPublicKey(privateKey));
  return {
    keyId,
    material: { kind: 'publicKey', hint: keyId },
    sign: async (data) => new Uint8Array(sign('sha256', data, privateKey)),
  };
}

/** keyCheck verifies ECDSA-SHA256 signatures with a public key. */
export function keyCheck(publicKey: KeyObject): SignatureCheck {
  return {
    keyId: keyIdOf(publicKey),
    verify: (data, signature) => {
      try {
        return verify('sha256', data, publicKey, signature);
      } catch {
        return false; // a malformed signature is one that does not verify
      }
    },
  };
}
