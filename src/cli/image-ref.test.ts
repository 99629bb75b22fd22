import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { RegistryClient } from '../registry/client.ts';
import { parseReference } from '../registry/reference.ts';
import { remoteImage } from '../registry/remote.ts';
import { digestReference, explainUnreachable, parseImageLocation } from './image-ref.ts';

// A port nothing listens on: bound, then closed, so connecting is refused.
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

// The error a real registry read gives when the registry cannot be reached.
async function unreachableError(): Promise<unknown> {
  const port = await closedPort();
  const client = new RegistryClient({ retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
  return remoteImage(client, parseReference(`127.0.0.1:${port}/app:v1`)).then(
    () => assert.fail('a closed port answered'),
    (e: unknown) => e,
  );
}

describe('explainUnreachable', () => {
  test('a bare name not in the local store and an unreachable registry: one line naming both', async () => {
    const err = await unreachableError();
    const e = explainUnreachable('my-app:v2', parseImageLocation('my-app:v2'), '/kiln/images', err);
    assert.ok(e instanceof Error);
    assert.match(
      e.message,
      /^image my-app:v2 not found in the local store \(\/kiln\/images\) and registry index\.docker\.io unreachable: \S+/,
    );
    assert.doesNotMatch(e.message, /\n/);
    assert.equal(e.cause, err);
  });

  test('names with a registry host, explicit transports and other failures keep their error', async () => {
    const err = await unreachableError();
    for (const arg of ['localhost:5000/app', 'ghcr.io/x/app:v1', 'docker://my-app']) {
      assert.equal(explainUnreachable(arg, parseImageLocation(arg), '/s', err), err, arg);
    }
    assert.equal(explainUnreachable('my-app', { kind: 'local', name: 'my-app' }, '/s', err), err);
    const notFound = new Error('GET manifest my-app: 404 MANIFEST_UNKNOWN');
    assert.equal(explainUnreachable('my-app', parseImageLocation('my-app'), '/s', notFound), notFound);
  });
});

describe('digestReference', () => {
  const d = `sha256:${'a'.repeat(64)}`;
  test('the repository without its tag at the digest, for registry and local store images alike', () => {
    assert.equal(digestReference(parseImageLocation('run:v1'), d), `docker.io/library/run@${d}`);
    assert.equal(digestReference({ kind: 'local', name: 'run:v1' }, d), `docker.io/library/run@${d}`);
    assert.equal(
      digestReference(parseImageLocation('localhost:5000/kiln/run:latest'), d),
      `localhost:5000/kiln/run@${d}`,
    );
    assert.equal(digestReference(parseImageLocation('oci:/x/layout:run'), d), `oci:/x/layout@${d}`);
  });
});
