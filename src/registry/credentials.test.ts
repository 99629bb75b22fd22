import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dockerConfigKeychain } from './credentials.ts';

describe('dockerConfigKeychain', () => {
  let dir = '';
  let bin = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-creds-'));
    bin = path.join(dir, 'bin');
    await writeFile(path.join(dir, 'placeholder'), '');
    await import('node:fs/promises').then((fs) => fs.mkdir(bin));
    // A real credential helper program speaking the docker-credential protocol.
    const helper = path.join(bin, 'docker-credential-test');
    await writeFile(
      helper,
      `#!/bin/sh
[ "$1" = get ] || exit 2
read server
case "$server" in
  helped.example) echo '{"ServerURL":"helped.example","Username":"hu","Secret":"helper-pw"}' ;;
  tok.example) echo '{"ServerURL":"tok.example","Username":"<token>","Secret":"refresh-123"}' ;;
  https://index.docker.io/v1/) echo '{"Username":"hub","Secret":"hub-pw"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    );
    await chmod(helper, 0o755);
    await writeFile(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          'https://plain.example/v1/': { auth: Buffer.from('pu:plain-pw').toString('base64') },
          'idt.example': { auth: Buffer.from('iu:').toString('base64'), identitytoken: 'idtok' },
        },
        credHelpers: { 'helped.example': 'test', 'tok.example': 'test' },
        credsStore: 'test',
      }),
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const env = () => ({ PATH: `${bin}:${process.env.PATH}` });

  test('auths with base64 auth and identitytoken', async () => {
    const k = dockerConfigKeychain({ dir, env: env() });
    assert.deepEqual(await k.resolve('plain.example'), {
      kind: 'basic',
      username: 'pu',
      password: 'plain-pw',
    });
    assert.deepEqual(await k.resolve('idt.example'), {
      kind: 'identityToken',
      username: 'iu',
      token: 'idtok',
    });
  });

  test('credHelpers and credsStore run docker-credential-* programs', async () => {
    const k = dockerConfigKeychain({ dir, env: env() });
    assert.deepEqual(await k.resolve('helped.example'), {
      kind: 'basic',
      username: 'hu',
      password: 'helper-pw',
    });
    assert.deepEqual(await k.resolve('tok.example'), {
      kind: 'identityToken',
      username: '<token>',
      token: 'refresh-123',
    });
    assert.deepEqual(await k.resolve('index.docker.io'), {
      kind: 'basic',
      username: 'hub',
      password: 'hub-pw',
    });
    assert.deepEqual(
      await k.resolve('unknown.example'),
      { kind: 'anonymous' },
      'helper "not found" is anonymous',
    );
  });

  test('missing helper and missing config', async () => {
    const k = dockerConfigKeychain({ dir, env: { PATH: '/nonexistent' } });
    await assert.rejects(k.resolve('helped.example'), /docker-credential-test not found on PATH/);
    const none = dockerConfigKeychain({ dir: path.join(dir, 'nope') });
    assert.deepEqual(await none.resolve('x.example'), { kind: 'anonymous' });
  });
});
