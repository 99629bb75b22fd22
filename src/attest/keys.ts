import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { KilnError } from '../internal/errors.ts';

// Signing keys: ECDSA P-256 (what cosign generates). The private key is kept encrypted at rest as
// PKCS#8 (PBES2: PBKDF2-SHA256 + AES-256-CBC, what OpenSSL writes); the public key is a PEM
// SubjectPublicKeyInfo, the file `cosign verify --key` takes.

/** A new key pair as the two files `kiln key generate` writes. */
export interface KeyPairPem {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

/** generateKeyPair makes a P-256 key pair; the private key is encrypted with `passphrase`. */
export function generateKeyPair(passphrase: string): KeyPairPem {
  if (passphrase === '')
    throw new KilnError('key generate: an empty passphrase would leave the key unencrypted');
  const { privateKey, publicKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

const PEM_LABEL = /-----BEGIN ([A-Z0-9 ]+)-----/;

function checkCurve(k: KeyObject, what: string): KeyObject {
  if (k.asymmetricKeyType !== 'ec' || k.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new KilnError(
      `${what}: expected an ECDSA P-256 key, found ${k.asymmetricKeyType ?? 'another kind'}`,
    );
  return k;
}

/** pemLabel is the type of the first PEM block in `text` (`ENCRYPTED PRIVATE KEY`, ...). */
export function pemLabel(text: string): string | undefined {
  return PEM_LABEL.exec(text)?.[1];
}

/**
 * needsPassphrase tells whether the private key in `text` is encrypted (so the caller asks for the
 * passphrase only then).
 */
export function needsPassphrase(text: string): boolean {
  return /ENCRYPTED/.test(pemLabel(text) ?? '');
}

/**
 * readPrivateKey reads a P-256 private key: encrypted PKCS#8 (kiln key generate, OpenSSL),
 * unencrypted PKCS#8 or SEC1 PEM, or cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign-key.ts).
 */
export async function readPrivateKey(
  text: string,
  passphrase: () => Promise<string>,
  what: string,
): Promise<KeyObject> {
  const label = pemLabel(text);
  if (!label) throw new KilnError(`${what}: not a PEM private key`);
  if (label === 'ENCRYPTED SIGSTORE PRIVATE KEY' || label === 'ENCRYPTED COSIGN PRIVATE KEY') {
    const { decryptCosignKey } = await import('./cosign-key.ts');
    return checkCurve(await decryptCosignKey(text, await passphrase(), what), what);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(
      label.includes('ENCRYPTED')
        ? { key: text, format: 'pem', passphrase: await passphrase() }
        : { key: text, format: 'pem' },
    );
  } catch {
    // Node's message for a wrong passphrase is an OpenSSL code; say what the user can do.
    throw new KilnError(`${what}: cannot decrypt the private key (wrong passphrase, or not a key)`);
  }
  return checkCurve(key, what);
}

/** readPublicKey reads a PEM public key (SubjectPublicKeyInfo, as cosign.pub). */
export function readPublicKey(text: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: 'pem' });
  } catch {
    throw new KilnError(`${what}: not a PEM public key`);
  }
  return checkCurve(key, what);
}
