// Bearer-token auth against a real docker-registry configured for token auth, with the test
// token server issuing the JWTs: challenge → token → success, scopes, caching, wrong passwords,
// and credentials from a docker config.json through a real credential helper program.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { KilnError } from '../../src/internal/errors.ts';
import { Redactor } from '../../src/internal/redactor.ts';
import { MediaType } from '../../src/oci/media-types.ts';
import { bytesLayer, imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { dockerConfigKeychain, staticKeychain } from '../../src/registry/credentials.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { writeImage } from '../../src/registry/write.ts';
import { type RegistryHandle, startProxy, startRegistry } from '../helpers/registry.ts';

const PASSWORD = 'pa55-w0rd-never-printed';

function image(seed: string) {
  const tar = Buffer.from(`content ${seed}`);
  return imageFrom({
    config: { architecture: 'amd64', os: 'linux', config: {} },
    layers: [bytesLayer({ blob: gzipSync(tar), tar, mediaType: MediaType.OciLayerGzip })],
  });
}

describe('bearer token auth', () => {
  let reg: RegistryHandle;
  let dir: string;

  before(async () => {
    reg = await startRegistry({
      auth: 'token',
      users: { alice: PASSWORD },
      refreshTokens: { alice: 'refresh-token-for-alice' },
    });
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-auth-'));
  });
  after(async () => {
    await reg.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('401 challenge, token with the push scope, push and pull succeed; tokens are cached', async () => {
    const tk = reg.tokenServer!;
    tk.requests.length = 0;
    const redactor = new Redactor();
    const client = new RegistryClient({
      keychain: staticKeychain({ [reg.host]: { kind: 'basic', username: 'alice', password: PASSWORD } }),
      redactor,
    });
    const ref = parseReference(`${reg.host}/team/app:v1`);
    const img = image('a');
    const { digest } = await writeImage(client, ref, img);
    assert.equal(digest, await img.digest());
    assert.equal(tk.requests.length, 1, 'one token for the whole push');
    // The run's redactor learnt the password the keychain gave and the token the server issued.
    assert.equal(redactor.redact(`pw ${PASSWORD}`), 'pw [REDACTED]');
    assert.ok(redactor.size >= 2, `password and token registered (${redactor.size} forms)`);
    assert.deepEqual(tk.requests[0], {
      user: 'alice',
      service: tk.service,
      scopes: ['repository:team/app:pull,push'],
      status: 200,
    });
    const back = await remoteImage(client, ref);
    assert.equal(await back.digest(), digest);
    await back.rawConfig();
    assert.equal(tk.requests.length, 2, 'one more token (pull scope) for the pull');
    assert.deepEqual(tk.requests[1]!.scopes, ['repository:team/app:pull']);
  });

  test('cross-repository mount asks pull on the source in the same token', async () => {
    const tk = reg.tokenServer!;
    const client = new RegistryClient({
      keychain: staticKeychain({ [reg.host]: { kind: 'basic', username: 'alice', password: PASSWORD } }),
    });
    const src = parseReference(`${reg.host}/team/base:v1`);
    await writeImage(client, src, image('m'));
    tk.requests.length = 0;
    const r = await writeImage(
      client,
      parseReference(`${reg.host}/team/derived:v1`),
      await remoteImage(client, src),
    );
    assert.ok([...r.blobs.values()].every((x) => x === 'mounted'));
    const push = tk.requests.find((q) => q.scopes.includes('repository:team/derived:pull,push'));
    assert.ok(push?.scopes.includes('repository:team/base:pull'));
  });

  test('a token that expires during a streamed upload: the upload restarts with a fresh token', async () => {
    const proxy = await startProxy(reg.host);
    let rejected = 0;
    proxy.setFault((r) => {
      if (r.method === 'PATCH' && rejected < 1) {
        rejected++;
        return {
          status: 401,
          body: '{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}',
          headers: {
            'www-authenticate': `Bearer realm="${reg.tokenServer!.url}/token",service="${reg.tokenServer!.service}"`,
          },
        };
      }
      return undefined;
    });
    try {
      const tk = reg.tokenServer!;
      const client = new RegistryClient({
        keychain: staticKeychain({ [proxy.host]: { kind: 'basic', username: 'alice', password: PASSWORD } }),
        monolithicMax: 16,
        retry: { baseDelayMs: 5 },
      });
      tk.requests.length = 0;
      const img = image('expiring');
      const { digest } = await writeImage(client, parseReference(`${proxy.host}/team/expiring:v1`), img);
      assert.equal(digest, await img.digest());
      assert.equal(rejected, 1);
      assert.equal(tk.requests.length, 2, 'a second token after the 401');
    } finally {
      await proxy.stop();
    }
  });

  test('a registry whose /v2/ answers anonymously but challenges per repository', async () => {
    const proxy = await startProxy(reg.host, (r) =>
      r.path === '/v2/' ? { status: 200, body: '{}' } : undefined,
    );
    try {
      const client = new RegistryClient({
        keychain: staticKeychain({ [proxy.host]: { kind: 'basic', username: 'alice', password: PASSWORD } }),
      });
      const ref = parseReference(`${proxy.host}/team/lazy-auth:v1`);
      const img = image('lazy');
      const { digest } = await writeImage(client, ref, img);
      assert.equal((await remoteImage(client, ref)).reference.digest, digest);
    } finally {
      await proxy.stop();
    }
  });

  test('a wrong password gives a clear error that does not contain the password', async () => {
    const client = new RegistryClient({
      keychain: staticKeychain({
        [reg.host]: { kind: 'basic', username: 'alice', password: `${PASSWORD}-wrong` },
      }),
      retry: { baseDelayMs: 5 },
    });
    await assert.rejects(
      writeImage(client, parseReference(`${reg.host}/team/app:v2`), image('w')),
      (e: Error) => {
        assert.ok(e instanceof KilnError);
        assert.equal(
          e.message,
          `authentication to registry ${reg.host} failed: the credentials for ${reg.host} were refused (token server answered 401)`,
        );
        assert.ok(!String(e.stack).includes(PASSWORD));
        return true;
      },
    );
    const anon = new RegistryClient({ retry: { baseDelayMs: 5 } });
    await assert.rejects(
      remoteImage(anon, parseReference(`${reg.host}/team/app:v1`)),
      /no credentials found for/,
    );
  });

  test('credentials from docker config.json through a docker-credential-* helper', async () => {
    const bin = path.join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    const helper = path.join(bin, 'docker-credential-test');
    await writeFile(
      helper,
      `#!/bin/sh\nread server\n[ "$server" = "${reg.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\necho '{"ServerURL":"${reg.host}","Username":"alice","Secret":"${PASSWORD}"}'\n`,
    );
    await chmod(helper, 0o755);
    const cfgDir = path.join(dir, 'docker');
    await mkdir(cfgDir, { recursive: true });
    await writeFile(
      path.join(cfgDir, 'config.json'),
      JSON.stringify({ credHelpers: { [reg.host]: 'test' } }),
    );
    const client = new RegistryClient({
      keychain: dockerConfigKeychain({ dir: cfgDir, env: { PATH: `${bin}:/usr/bin:/bin` } }),
    });
    const ref = parseReference(`${reg.host}/helper/app:v1`);
    const img = image('h');
    const { digest } = await writeImage(client, ref, img);
    assert.equal((await remoteImage(client, ref)).reference.digest, digest);
  });

  test('an identity token from docker config.json is exchanged with the refresh-token grant', async () => {
    const cfgDir = path.join(dir, 'docker-idt');
    await mkdir(cfgDir, { recursive: true });
    await writeFile(
      path.join(cfgDir, 'config.json'),
      JSON.stringify({
        auths: {
          [reg.host]: {
            auth: Buffer.from('alice:').toString('base64'),
            identitytoken: 'refresh-token-for-alice',
          },
        },
      }),
    );
    const tk = reg.tokenServer!;
    tk.requests.length = 0;
    const client = new RegistryClient({ keychain: dockerConfigKeychain({ dir: cfgDir }) });
    const ref = parseReference(`${reg.host}/idt/app:v1`);
    await writeImage(client, ref, image('idt'));
    assert.deepEqual(tk.requests[0], {
      user: 'alice',
      service: tk.service,
      scopes: ['repository:idt/app:pull,push'],
      status: 200,
    });
  });

  test('docker config.json auths with base64 user:password', async () => {
    const cfgDir = path.join(dir, 'docker-auths');
    await mkdir(cfgDir, { recursive: true });
    await writeFile(
      path.join(cfgDir, 'config.json'),
      JSON.stringify({
        auths: { [`http://${reg.host}`]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } },
      }),
    );
    const client = new RegistryClient({ keychain: dockerConfigKeychain({ dir: cfgDir }) });
    const ref = parseReference(`${reg.host}/auths/app:v1`);
    await writeImage(client, ref, image('x'));
    assert.deepEqual(await client.repository(ref).listTags(), ['v1']);
  });
});

describe('basic auth (htpasswd)', () => {
  test('basic challenge: credentials sent on every request; wrong password is a clear 401', async () => {
    const reg = await startRegistry({ auth: 'basic', users: { bob: PASSWORD } });
    try {
      const client = new RegistryClient({
        keychain: staticKeychain({ [reg.host]: { kind: 'basic', username: 'bob', password: PASSWORD } }),
      });
      const ref = parseReference(`${reg.host}/basic/app:v1`);
      const img = image('basic');
      const { digest } = await writeImage(client, ref, img);
      assert.equal((await remoteImage(client, ref)).reference.digest, digest);

      const wrong = new RegistryClient({
        keychain: staticKeychain({
          [reg.host]: { kind: 'basic', username: 'bob', password: 'not-it-at-all' },
        }),
        retry: { baseDelayMs: 5 },
      });
      await assert.rejects(remoteImage(wrong, ref), (e: Error) => {
        assert.match(e.message, /^get manifest 127\.0\.0\.1:\d+\/basic\/app:v1: 401 UNAUTHORIZED/);
        assert.ok(!e.message.includes('not-it-at-all'));
        return true;
      });
      await assert.rejects(
        remoteImage(new RegistryClient(), ref),
        /registry 127\.0\.0\.1:\d+ requires a user name and password: none found in the docker config/,
      );
    } finally {
      await reg.stop();
    }
  });
});
