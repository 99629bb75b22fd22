// CNB_REGISTRY_AUTH (the platform spec's JSON of registry → Authorization header value, as CI
// systems set it) against a real registry with htpasswd basic auth: a push with `-v` succeeds,
// the header value and the password never appear in the output, and its entry wins over a
// docker config holding wrong credentials for the same registry.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeLayer } from '../../src/layers/layer-writer.ts';
import { Layout } from '../../src/layout/layout.ts';
import { imageFrom } from '../../src/oci/memory.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { registryAuthKeychain, staticKeychain } from '../../src/registry/credentials.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { runMain } from '../helpers/cli.ts';
import { type RegistryHandle, startRegistry } from '../helpers/registry.ts';
import { fileEntry } from '../helpers/tar-entries.ts';

const PASSWORD = 'ci-s3cret-Pa55word-xyz';
const HEADER = `Basic ${Buffer.from(`ci-bot:${PASSWORD}`).toString('base64')}`;

let reg: RegistryHandle;
let work: string;
let env: Record<string, string | undefined>;

before(async () => {
  reg = await startRegistry({ auth: 'basic', users: { 'ci-bot': PASSWORD } });
  work = await mkdtemp(path.join(tmpdir(), 'kiln-cnbauth-'));
  env = {
    HOME: work,
    PATH: process.env.PATH,
    DOCKER_CONFIG: path.join(work, 'docker'),
    KILN_HOME: path.join(work, 'kiln'),
  };
  const layout = await Layout.init(path.join(work, 'src'));
  const layer = await writeLayer([fileEntry('hello.txt', 'hi\n')], { store: layout.blobs });
  await layout.writeImage(
    imageFrom({ config: { architecture: 'amd64', os: 'linux' }, layers: [layer] }),
    'v1',
  );
});
after(async () => {
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const copy = (dst: string, extra: Record<string, string>) =>
  runMain(['-v', '--insecure-registry', reg.host, 'image', 'copy', `oci:${path.join(work, 'src')}:v1`, dst], {
    ...env,
    ...extra,
  });

describe('CNB_REGISTRY_AUTH', () => {
  test('a push to a basic-auth registry with -v; the header value is never printed', async () => {
    const r = await copy(`${reg.host}/ci/app:v1`, {
      CNB_REGISTRY_AUTH: JSON.stringify({ [reg.host]: HEADER }),
    });
    assert.equal(r.code, 0, r.err);
    const output = r.out + r.err;
    assert.match(r.err, /Copied 127\.0\.0\.1:\d+\/ci\/app:v1@sha256:/);
    assert.ok(!output.includes(HEADER.slice('Basic '.length)), 'the header value is not printed');
    assert.ok(!output.includes(PASSWORD), 'the password is not printed');
    const client = new RegistryClient({
      keychain: staticKeychain({ [reg.host]: { kind: 'basic', username: 'ci-bot', password: PASSWORD } }),
      insecure: [reg.host],
    });
    assert.deepEqual(await client.repository(parseReference(`${reg.host}/ci/app:v1`)).listTags(), ['v1']);
  });

  test('without it the push fails; its entry wins over wrong docker config credentials', async () => {
    const none = await copy(`${reg.host}/ci/none:v1`, {});
    assert.notEqual(none.code, 0);
    assert.match(none.err, /requires a user name and password/);
    await mkdir(env.DOCKER_CONFIG!, { recursive: true });
    await writeFile(
      path.join(env.DOCKER_CONFIG!, 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('ci-bot:wrong').toString('base64') } } }),
    );
    const wrong = await copy(`${reg.host}/ci/wrong:v1`, {});
    assert.notEqual(wrong.code, 0, 'the docker config alone has the wrong password');
    const r = await copy(`${reg.host}/ci/both:v1`, {
      CNB_REGISTRY_AUTH: JSON.stringify({ [reg.host]: HEADER }),
    });
    assert.equal(r.code, 0, r.err);
    await rm(path.join(env.DOCKER_CONFIG!, 'config.json'));
    // A refused value: the failure names the registry, never the value.
    const refusedPassword = 'refused-Pa55-qq';
    const refused = Buffer.from(`ci-bot:${refusedPassword}`).toString('base64');
    const no = await copy(`${reg.host}/ci/refused:v1`, {
      CNB_REGISTRY_AUTH: JSON.stringify({ [reg.host]: `Basic ${refused}` }),
      KILN_DEBUG: '1',
    });
    assert.notEqual(no.code, 0);
    assert.match(no.err, /401/);
    assert.ok(!(no.out + no.err).includes(refused) && !(no.out + no.err).includes(refusedPassword));
  });

  test('bad values fail naming the registry, never the value', async () => {
    const fallback = staticKeychain({});
    assert.throws(() => registryAuthKeychain('{nope', fallback), /CNB_REGISTRY_AUTH is not JSON/);
    assert.throws(() => registryAuthKeychain('[]', fallback), /expected a JSON object/);
    assert.throws(
      () => registryAuthKeychain(JSON.stringify({ 'r.example': 'Digest zzz-secret' }), fallback),
      (e: Error) =>
        /entry for r\.example: unsupported scheme/.test(e.message) && !e.message.includes('zzz-secret'),
    );
    const k = registryAuthKeychain(
      JSON.stringify({ 'https://index.docker.io/v1/': 'Bearer tok-1', 'r.example:5000': HEADER }),
      staticKeychain({ 'other.example': { kind: 'registryToken', token: 'fallback' } }),
    );
    assert.deepEqual(await k.resolve('index.docker.io'), { kind: 'registryToken', token: 'tok-1' });
    assert.deepEqual(await k.resolve('r.example:5000'), {
      kind: 'basic',
      username: 'ci-bot',
      password: PASSWORD,
    });
    assert.deepEqual(await k.resolve('other.example'), { kind: 'registryToken', token: 'fallback' });
    const bad = await runMain(['image', 'inspect', 'oci:/nonexistent'], {
      ...env,
      CNB_REGISTRY_AUTH: '{"x": 1}',
    });
    assert.notEqual(bad.code, 0);
  });
});
