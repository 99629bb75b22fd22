import { KilnError } from '../internal/errors.ts';
import type { SignatureCheck, Signer } from './signer.ts';

// DSSE v1 (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md): the signature is
// over PAE(payloadType, payload), never over the JSON of the envelope.

export interface Envelope {
  readonly payload: string; // base64
  readonly payloadType: string;
  readonly signatures: readonly { readonly keyid: string; readonly sig: string }[];
}

/** pae is the pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = Buffer.from(payloadType, 'utf8');
  const head = Buffer.from(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `, 'utf8');
  return Buffer.concat([head, payload]);
}

/** signEnvelope signs `payload` with `signer` as a one-signature DSSE envelope. */
export async function signEnvelope(
  signer: Signer,
  payloadType: string,
  payload: Uint8Array,
): Promise<Envelope> {
  const sig = await signer.sign(pae(payloadType, payload));
  return {
    payload: Buffer.from(payload).toString('base64'),
    payloadType,
    signatures: [{ keyid: signer.keyId, sig: Buffer.from(sig).toString('base64') }],
  };
}

/**
 * openEnvelope returns the payload of `env` when one of its signatures verifies with one of
 * `checks` (a key), else throws naming what failed.
 */
export function openEnvelope(
  env: Envelope,
  checks: readonly SignatureCheck[],
  what: string,
): { payload: Uint8Array; keyId: string } {
  const payload = Buffer.from(env.payload, 'base64');
  const signed = pae(env.payloadType, payload);
  for (const s of env.signatures) {
    const sig = Buffer.from(s.sig, 'base64');
    for (const c of checks) if (c.verify(signed, sig)) return { payload, keyId: c.keyId };
  }
  throw new KilnError(`${what}: no DSSE signature verifies with the given key`);
}
