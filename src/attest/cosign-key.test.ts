import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, scryptSync, verify } from 'node:crypto';
import { test } from 'node:test';
import { secretboxOpen, secretboxSeal } from './cosign-key.ts';
import { readPrivateKey } from './keys.ts';
import { keySigner } from './signer.ts';

/** cosignPem seals a PKCS#8 key the way `cosign generate-key-pair` does (scrypt + nacl/secretbox). */
function cosignPem(der: Buffer, passphrase: string, label = 'ENCRYPTED SIGSTORE PRIVATE KEY'): string {
  const salt = randomBytes(32);
  const nonce = randomBytes(24);
  const key = scryptSync(passphrase, salt, 32, { N: 1 << 14, r: 8, p: 1 });
  const json = JSON.stringify({
    kdf: { name: 'scrypt', params: { N: 1 << 14, r: 8, p: 1 }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(secretboxSeal(der, nonce, key)).toString('base64'),
  });
  const b64 = Buffer.from(json)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

test('secretbox: what is sealed opens; a flipped bit anywhere, another nonce or key does not', () => {
  const key = randomBytes(32);
  const nonce = randomBytes(24);
  for (const len of [0, 1, 31, 32, 33, 64, 100, 200]) {
    const msg = randomBytes(len);
    const box = secretboxSeal(msg, nonce, key);
    assert.equal(box.length, len + 16);
    assert.deepEqual(Buffer.from(secretboxOpen(box, nonce, key)!), msg);
    for (const i of [0, 15, 16, box.length - 1]) {
      if (i >= box.length) continue;
      const bad = Buffer.from(box);
      bad[i] = bad[i]! ^ 0x01;
      assert.equal(secretboxOpen(bad, nonce, key), undefined, `bit flipped at ${i} of ${len}`);
    }
    const otherNonce = Buffer.from(nonce);
    otherNonce[20] = otherNonce[20]! ^ 1;
    assert.equal(secretboxOpen(box, otherNonce, key), undefined);
    assert.equal(secretboxOpen(box, nonce, randomBytes(32)), undefined);
  }
});

test("cosign's encrypted key format is read (both PEM labels); the key signs; a wrong passphrase is one clear error", async () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  for (const label of ['ENCRYPTED SIGSTORE PRIVATE KEY', 'ENCRYPTED COSIGN PRIVATE KEY']) {
    const pem = cosignPem(der, 'pw', label);
    const k = await readPrivateKey(pem, async () => 'pw', 'cosign.key');
    const sig = await keySigner(k).sign(Buffer.from('payload'));
    assert.equal(verify('sha256', Buffer.from('payload'), publicKey, sig), true);
    await assert.rejects(
      readPrivateKey(pem, async () => 'wrong', 'cosign.key'),
      /cosign\.key: cannot decrypt the private key/,
    );
  }
  // An empty passphrase (cosign allows it) works too.
  const k = await readPrivateKey(cosignPem(der, ''), async () => '', 'cosign.key');
  assert.equal(k.asymmetricKeyDetails?.namedCurve, 'prime256v1');
});
