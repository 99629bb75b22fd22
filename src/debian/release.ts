import { readFile } from 'node:fs/promises';
import type * as OpenPgp from 'openpgp';
import { KilnError } from '../internal/errors.ts';
import { field, parseDeb822 } from './deb822.ts';

/** IndexFile is one entry of a Release file's SHA256 list: a path under dists/<suite>/. */
export interface IndexFile {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

/** Release is the verified content of an InRelease file. */
export interface Release {
  readonly suite: string;
  readonly codename: string;
  readonly version: string;
  readonly date: string;
  /** Files listed under `SHA256:`, by path. */
  readonly files: ReadonlyMap<string, IndexFile>;
  /** Fingerprint of the key whose signature checked out. */
  readonly signedBy: string;
}

/** Keyring is a set of OpenPGP public keys, read once and reused for every suite. */
export interface Keyring {
  readonly keys: readonly OpenPgp.PublicKey[];
  readonly source: string;
}

/** readKeyring loads a binary (or armored) OpenPGP keyring such as debian-archive-keyring.gpg. */
export async function readKeyring(path: string): Promise<Keyring> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new KilnError(`cannot read Debian archive keyring ${path}: ${(e as Error).message}`);
  }
  // openpgp is large: loaded only when a signature is actually checked (not for --locked runs).
  const openpgp = await import('openpgp');
  try {
    const text = bytes.subarray(0, 64).toString('latin1');
    const keys = text.includes('-----BEGIN PGP')
      ? await openpgp.readKeys({ armoredKeys: bytes.toString('utf8') })
      : await openpgp.readKeys({ binaryKeys: new Uint8Array(bytes) });
    if (keys.length === 0) throw new Error('no keys');
    return { keys, source: path };
  } catch (e) {
    throw new KilnError(`invalid Debian archive keyring ${path}: ${(e as Error).message}`);
  }
}

/**
 * verifyInRelease checks the clear-signed `text` against `keyring` and parses the signed part.
 * It fails closed: an unsigned file, a signature by an unknown key or a bad signature all throw a
 * KilnError naming `what` (the URL or suite), and nothing of the unsigned text is ever returned.
 */
export async function verifyInRelease(text: string, keyring: Keyring, what: string): Promise<Release> {
  const openpgp = await import('openpgp');
  let message: OpenPgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: text });
  } catch (e) {
    throw new KilnError(`InRelease ${what} is not a clear-signed OpenPGP message: ${(e as Error).message}`);
  }
  const result = await openpgp.verify({ message, verificationKeys: [...keyring.keys], expectSigned: false });
  let signedBy = '';
  const failures: string[] = [];
  for (const sig of result.signatures) {
    try {
      await sig.verified;
      const key = keyring.keys.find((k) => k.getKeys(sig.keyID).length > 0);
      signedBy = key ? key.getFingerprint() : sig.keyID.toHex();
      break;
    } catch (e) {
      failures.push(`${sig.keyID.toHex()}: ${(e as Error).message}`);
    }
  }
  if (!signedBy) {
    const why = failures.length ? failures.join('; ') : 'no signatures';
    throw new KilnError(`InRelease ${what}: no valid signature by a key in ${keyring.source} (${why})`);
  }
  // Only the signed text is parsed: result.data is what the signature covers.
  const signed = String(result.data);
  const para = parseDeb822(signed)[0];
  if (!para) throw new KilnError(`InRelease ${what}: signed text is empty`);
  const files = new Map<string, IndexFile>();
  const list = field(para, 'SHA256') ?? '';
  for (const line of list.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3) continue;
    const [sha256, size, path] = parts as [string, string, string];
    files.set(path, { path, size: Number(size), sha256 });
  }
  if (files.size === 0) throw new KilnError(`InRelease ${what}: no SHA256 file list`);
  return {
    suite: field(para, 'Suite') ?? '',
    codename: field(para, 'Codename') ?? '',
    version: field(para, 'Version') ?? '',
    date: field(para, 'Date') ?? '',
    files,
    signedBy,
  };
}
