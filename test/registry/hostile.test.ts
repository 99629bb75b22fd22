// A registry that misbehaves on purpose: the fault-injecting proxy in front of a real
// docker-registry answers chosen requests with hostile challenges and bodies.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { KilnError } from '../../src/internal/errors.ts';
import { sha256 } from '../../src/oci/digest.ts';
import { MediaType } from '../../src/oci/media-types.ts';
import { RegistryClient, referrersTag } from '../../src/registry/client.ts';
import { staticKeychain } from '../../src/registry/credentials.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import {
  type Fault,
  type ProxyHandle,
  type RegistryHandle,
  startProxy,
  startRegistry,
} from '../helpers/registry.ts';

const FAST = { baseDelayMs: 2, maxDelayMs: 10 };

describe('hostile registry answers', () => {
  let reg: RegistryHandle;
  let proxy: ProxyHandle;
  before(async () => {
    reg = await startRegistry();
    proxy = await startProxy(reg.host);
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
  });

  test('a token realm that is not http(s) is refused before any credential is sent', async () => {
    proxy.setFault((r) =>
      r.path === '/v2/'
        ? { status: 401, headers: { 'www-authenticate': 'Bearer realm="file:///etc/passwd",service="x"' } }
        : undefined,
    );
    try {
      const client = new RegistryClient({
        retry: FAST,
        keychain: staticKeychain({
          [proxy.host]: { kind: 'basic', username: 'u', password: 'hostile-pw-1' },
        }),
      });
      await assert.rejects(remoteImage(client, parseReference(`${proxy.host}/a/b:c`)), (e: Error) => {
        assert.ok(e instanceof KilnError);
        assert.equal(
          e.message,
          `registry ${proxy.host} sent a token realm with scheme file: (expected http or https)`,
        );
        return true;
      });
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a huge error body is read only up to the limit and summarised in one line', async () => {
    const huge = `<html>${'x'.repeat(5 << 20)}</html>`;
    proxy.setFault((r) => (r.path.includes('/manifests/') ? { status: 400, body: huge } : undefined));
    try {
      const client = new RegistryClient({ retry: FAST });
      await assert.rejects(remoteImage(client, parseReference(`${proxy.host}/a/b:c`)), (e: Error) => {
        assert.ok(e instanceof RegistryError);
        assert.equal(e.status, 400);
        assert.ok(e.message.length < 400, `message is short (${e.message.length})`);
        assert.ok(!e.message.includes('\n'));
        return true;
      });
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a registry error echoing a token has it redacted', async () => {
    proxy.setFault((r) =>
      r.path.includes('/manifests/')
        ? {
            status: 403,
            body: JSON.stringify({
              errors: [
                { code: 'DENIED', message: 'denied for Authorization: Bearer abcdefghijklmnopqrstuvwxyz' },
              ],
            }),
          }
        : undefined,
    );
    try {
      const client = new RegistryClient({ retry: FAST });
      await assert.rejects(remoteImage(client, parseReference(`${proxy.host}/a/b:c`)), (e: Error) => {
        assert.match(e.message, /403 DENIED: denied for Authorization: Bearer \[REDACTED\]/);
        assert.ok(!e.message.includes('abcdefghijklmnop'));
        return true;
      });
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a manifest over the size limit is refused', async () => {
    proxy.setFault((r) =>
      r.path.includes('/manifests/')
        ? {
            status: 200,
            body: JSON.stringify({ schemaVersion: 2, pad: 'x'.repeat(5 << 20) }),
            headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
          }
        : undefined,
    );
    try {
      const client = new RegistryClient({ retry: FAST });
      await assert.rejects(
        remoteImage(client, parseReference(`${proxy.host}/a/b:c`)),
        /larger than the 4194304-byte manifest limit|response larger than 4194304 bytes/,
      );
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('a registry with the referrers API: its answer is used and no fallback tag is touched', async () => {
    // docker-registry 2.8 has no referrers API; the proxy answers for it, as newer registries do.
    const subject = sha256('subject manifest');
    const cdx = 'application/vnd.cyclonedx+json';
    const spdx = 'application/spdx+json';
    const listed = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { mediaType: MediaType.OciManifest, digest: sha256('a'), size: 10, artifactType: cdx },
        { mediaType: MediaType.OciManifest, digest: sha256('b'), size: 11, artifactType: spdx },
      ],
    };
    const artifact = Buffer.from(JSON.stringify({ schemaVersion: 2, artifactType: cdx, subject }));
    proxy.reset();
    proxy.setFault((r): Fault | undefined => {
      if (r.method === 'GET' && r.path.startsWith(`/v2/ref/api/referrers/${subject}`))
        return { status: 200, body: JSON.stringify(listed), headers: { 'content-type': MediaType.OciIndex } };
      // A registry that processes subjects says so with OCI-Subject on the manifest PUT.
      if (r.method === 'PUT' && r.path === `/v2/ref/api/manifests/${sha256(artifact)}`)
        return {
          status: 201,
          headers: { 'oci-subject': subject, 'docker-content-digest': sha256(artifact) },
        };
      return undefined;
    });
    try {
      const repo = new RegistryClient({ retry: FAST }).repository(
        parseReference(`${proxy.host}/ref/api:v1`),
        {
          push: true,
        },
      );
      const all = await repo.referrers(subject);
      assert.deepEqual(
        all.manifests.map((m) => m.artifactType),
        [cdx, spdx],
      );
      const only = await repo.referrers(subject, spdx);
      assert.deepEqual(
        only.manifests.map((m) => m.digest),
        [sha256('b')],
      );
      const put = await repo.putReferrer(
        artifact,
        MediaType.OciManifest,
        { mediaType: MediaType.OciManifest, artifactType: cdx },
        subject,
      );
      assert.equal(put, sha256(artifact));
      const fallback = proxy.stats.requests.filter((r) =>
        r.path.includes(`/manifests/${referrersTag(subject)}`),
      );
      assert.deepEqual(fallback, [], 'the tag-schema index is neither read nor written');
    } finally {
      proxy.setFault(undefined);
    }
  });

  test('non-loopback registries use https unless marked insecure', () => {
    const client = new RegistryClient({ insecure: ['registry.internal:5000'] });
    assert.equal(client.scheme('registry.internal:5000'), 'http');
    assert.equal(client.scheme('registry.internal'), 'https');
    assert.equal(client.scheme('127.0.0.1:5000'), 'http');
    assert.equal(client.scheme('index.docker.io'), 'https');
  });
});
