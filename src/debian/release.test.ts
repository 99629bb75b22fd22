import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { KilnError } from '../internal/errors.ts';
import { readKeyring, verifyInRelease } from './release.ts';

const dir = new URL('./testdata/', import.meta.url).pathname;
const keyring = await readKeyring(`${dir}debian-archive-keyring.gpg`);
const inRelease = await readFile(`${dir}bookworm-security_InRelease`, 'utf8');

describe('verifyInRelease()', () => {
  test('accepts a real InRelease signed by the Debian archive keyring and lists its files', async () => {
    const r = await verifyInRelease(inRelease, keyring, 'bookworm-security');
    assert.equal(r.codename, 'bookworm-security');
    assert.match(r.signedBy, /^[0-9a-f]{40}$/);
    const packages = [...r.files.keys()].filter((p) => p === 'main/binary-amd64/Packages.xz');
    assert.equal(packages.length, 1);
    assert.match(r.files.get('main/binary-amd64/Packages.xz')!.sha256, /^[0-9a-f]{64}$/);
  });

  test('refuses a tampered InRelease (one hash changed)', async () => {
    const tampered = inRelease.replace(/^ ([0-9a-f])/m, (_m, c: string) => ` ${c === '0' ? '1' : '0'}`);
    assert.notEqual(tampered, inRelease);
    await assert.rejects(verifyInRelease(tampered, keyring, 'bookworm-security'), (e: Error) => {
      assert.ok(e instanceof KilnError);
      assert.match(e.message, /InRelease bookworm-security: no valid signature/);
      return true;
    });
  });

  test('refuses an unsigned Release text', async () => {
    const body = inRelease.slice(inRelease.indexOf('Origin:'), inRelease.indexOf('-----BEGIN PGP SIGNATURE'));
    await assert.rejects(verifyInRelease(body, keyring, 'plain'), /not a clear-signed OpenPGP message/);
  });

  test('refuses a signature by a key outside the keyring', async () => {
    const other = { keys: keyring.keys.filter(() => false), source: 'empty' };
    await assert.rejects(verifyInRelease(inRelease, other, 'x'), /no valid signature by a key in empty/);
  });

  test('readKeyring names the path it cannot read', async () => {
    await assert.rejects(
      readKeyring('/nonexistent/keyring.gpg'),
      /cannot read Debian archive keyring \/nonexistent/,
    );
  });
});
