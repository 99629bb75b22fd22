import { createPrivateKey, type KeyObject, scrypt, timingSafeEqual } from 'node:crypto';
import { KilnError } from '../internal/errors.ts';

// cosign's encrypted private key (`ENCRYPTED SIGSTORE PRIVATE KEY`, or `ENCRYPTED COSIGN PRIVATE
// KEY` from older cosign): base64 JSON {kdf: scrypt(N, r, p, salt), cipher: nacl/secretbox(nonce),
// ciphertext}; the plaintext is the PKCS#8 DER key. node:crypto has scrypt but not NaCl's
// secretbox (XSalsa20-Poly1305), so its opening half is here: Salsa20/20 core, HSalsa20, and
// Poly1305 over BigInt (keys are a few hundred bytes; speed does not matter, the tag check does).

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];
const rotl = (v: number, n: number) => ((v << n) | (v >>> (32 - n))) >>> 0;

function rounds(x: Uint32Array): void {
  const qr = (a: number, b: number, c: number, d: number) => {
    x[b] = (x[b]! ^ rotl((x[a]! + x[d]!) >>> 0, 7)) >>> 0;
    x[c] = (x[c]! ^ rotl((x[b]! + x[a]!) >>> 0, 9)) >>> 0;
    x[d] = (x[d]! ^ rotl((x[c]! + x[b]!) >>> 0, 13)) >>> 0;
    x[a] = (x[a]! ^ rotl((x[d]! + x[c]!) >>> 0, 18)) >>> 0;
  };
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12);
    qr(5, 9, 13, 1);
    qr(10, 14, 2, 6);
    qr(15, 3, 7, 11);
    qr(0, 1, 2, 3);
    qr(5, 6, 7, 4);
    qr(10, 11, 8, 9);
    qr(15, 12, 13, 14);
  }
}

const words = (b: Uint8Array, n: number) =>
  Array.from({ length: n }, (_, i) => Buffer.from(b).readUInt32LE(i * 4));

function state(key: Uint8Array, middle: readonly number[]): Uint32Array {
  const k = words(key, 8);
  return Uint32Array.from([
    SIGMA[0]!,
    ...k.slice(0, 4),
    SIGMA[1]!,
    ...middle,
    SIGMA[2]!,
    ...k.slice(4),
    SIGMA[3]!,
  ]);
}

function hsalsa20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const x = state(key, words(nonce16, 4));
  rounds(x);
  const out = Buffer.alloc(32);
  [0, 5, 10, 15, 6, 7, 8, 9].forEach((w, i) => {
    out.writeUInt32LE(x[w]!, i * 4);
  });
  return out;
}

/** The Salsa20 keystream of `key` and an 8-byte nonce, `length` bytes from block 0. */
function salsa20Stream(key: Uint8Array, nonce8: Uint8Array, length: number): Uint8Array {
  const out = Buffer.alloc(Math.ceil(length / 64) * 64);
  const n = words(nonce8, 2);
  for (let block = 0; block * 64 < length; block++) {
    const init = state(key, [...n, block >>> 0, Math.floor(block / 2 ** 32)]);
    const x = Uint32Array.from(init);
    rounds(x);
    for (let i = 0; i < 16; i++) out.writeUInt32LE((x[i]! + init[i]!) >>> 0, block * 64 + i * 4);
  }
  return out.subarray(0, length);
}

const P1305 = (1n << 130n) - 5n;
const le = (b: Uint8Array) => b.reduceRight((acc, v) => (acc << 8n) | BigInt(v), 0n);

function poly1305(key: Uint8Array, msg: Uint8Array): Uint8Array {
  const r = le(key.subarray(0, 16)) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
  const s = le(key.subarray(16, 32));
  let acc = 0n;
  for (let i = 0; i < msg.length; i += 16) {
    const chunk = msg.subarray(i, i + 16);
    acc = ((acc + le(chunk) + (1n << BigInt(8 * chunk.length))) * r) % P1305;
  }
  let tag = (acc + s) & ((1n << 128n) - 1n);
  const out = Buffer.alloc(16);
  for (let i = 0; i < 16; i++, tag >>= 8n) out[i] = Number(tag & 0xffn);
  return out;
}

/** secretboxOpen is NaCl's crypto_secretbox_open (XSalsa20-Poly1305); undefined when forged. */
export function secretboxOpen(
  box: Uint8Array,
  nonce24: Uint8Array,
  key32: Uint8Array,
): Uint8Array | undefined {
  if (box.length < 16 || nonce24.length !== 24 || key32.length !== 32) return undefined;
  const sub = hsalsa20(key32, nonce24.subarray(0, 16));
  const ct = box.subarray(16);
  const stream = salsa20Stream(sub, nonce24.subarray(16), 32 + ct.length);
  const tag = poly1305(stream.subarray(0, 32), ct);
  if (!timingSafeEqual(Buffer.from(tag), Buffer.from(box.subarray(0, 16)))) return undefined;
  const out = Buffer.alloc(ct.length);
  for (let i = 0; i < ct.length; i++) out[i] = ct[i]! ^ stream[32 + i]!;
  return out;
}

/** secretboxSeal is crypto_secretbox (the inverse of secretboxOpen); tests seal keys with it. */
export function secretboxSeal(msg: Uint8Array, nonce24: Uint8Array, key32: Uint8Array): Uint8Array {
  const sub = hsalsa20(key32, nonce24.subarray(0, 16));
  const stream = salsa20Stream(sub, nonce24.subarray(16), 32 + msg.length);
  const ct = Buffer.alloc(msg.length);
  for (let i = 0; i < msg.length; i++) ct[i] = msg[i]! ^ stream[32 + i]!;
  return Buffer.concat([poly1305(stream.subarray(0, 32), ct), ct]);
}

interface Sealed {
  kdf?: { name?: unknown; params?: { N?: unknown; r?: unknown; p?: unknown }; salt?: unknown };
  cipher?: { name?: unknown; nonce?: unknown };
  ciphertext?: unknown;
}

/** decryptCosignKey opens cosign's encrypted private key PEM with `passphrase`. */
export async function decryptCosignKey(pem: string, passphrase: string, what: string): Promise<KeyObject> {
  const body = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, '').replace(/\s+/g, '');
  let j: Sealed;
  try {
    j = JSON.parse(Buffer.from(body, 'base64').toString('utf8')) as Sealed;
  } catch {
    throw new KilnError(`${what}: not a cosign encrypted key`);
  }
  const { N, r, p } = j.kdf?.params ?? {};
  const ok = (v: unknown, max: number): v is number =>
    Number.isInteger(v) && (v as number) > 0 && (v as number) <= max;
  if (
    j.kdf?.name !== 'scrypt' ||
    j.cipher?.name !== 'nacl/secretbox' ||
    !ok(N, 1 << 20) ||
    !ok(r, 32) ||
    !ok(p, 16)
  )
    throw new KilnError(`${what}: unsupported cosign key encryption (expected scrypt + nacl/secretbox)`);
  if (
    typeof j.kdf.salt !== 'string' ||
    typeof j.cipher.nonce !== 'string' ||
    typeof j.ciphertext !== 'string'
  )
    throw new KilnError(`${what}: not a cosign encrypted key`);
  const key = await new Promise<Buffer>((resolve, reject) =>
    scrypt(
      passphrase,
      Buffer.from(j.kdf!.salt as string, 'base64'),
      32,
      { N, r, p, maxmem: 256 * N * r + (1 << 20) },
      (e, k) => (e ? reject(e) : resolve(k)),
    ),
  );
  const plain = secretboxOpen(
    Buffer.from(j.ciphertext, 'base64'),
    Buffer.from(j.cipher.nonce, 'base64'),
    key,
  );
  if (!plain) throw new KilnError(`${what}: cannot decrypt the private key (wrong passphrase, or not a key)`);
  try {
    return createPrivateKey({ key: Buffer.from(plain), format: 'der', type: 'pkcs8' });
  } catch {
    throw new KilnError(`${what}: the decrypted cosign key is not a PKCS#8 private key`);
  }
}
