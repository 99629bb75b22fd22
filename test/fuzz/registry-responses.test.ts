import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { KilnError } from '../../src/internal/errors.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { parseReference } from '../../src/registry/reference.ts';
import { remoteImage } from '../../src/registry/remote.ts';
import { expectCleanError, mutatedJson, nastyJson, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of what a registry answers: the WWW-Authenticate challenge, the token
// server's JSON, the tag list, and manifests and indexes. A real HTTP server on 127.0.0.1 answers
// what each case says; kiln gives values or one KilnError/TypeError line, never a crash.

interface Answers {
  challenge: string;
  token: string;
  tags: string;
  manifest: string;
  contentType: string;
  link?: string;
}
let answers: Answers;
let server: Server;
let host = '';

before(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? '';
    if (url === '/v2/') {
      res.writeHead(401, { 'www-authenticate': answers.challenge.replaceAll('HOST', host) });
      res.end();
    } else if (url.startsWith('/token')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(answers.token);
    } else if (url.includes('/tags/list')) {
      res.writeHead(200, {
        'content-type': 'application/json',
        ...(answers.link ? { link: answers.link } : {}),
      });
      res.end(answers.tags);
    } else if (url.includes('/manifests/')) {
      res.writeHead(200, { 'content-type': answers.contentType });
      res.end(answers.manifest);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const D = `sha256:${'c'.repeat(64)}`;
const manifest = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D, size: 2 },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D, size: 3 }],
};
const index = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [
    {
      ...manifest.config,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      platform: { os: 'linux', architecture: 'amd64' },
    },
  ],
};

const body = (example: unknown) =>
  fc.oneof(
    { weight: 1, arbitrary: fc.constant(JSON.stringify(example)) },
    { weight: 3, arbitrary: mutatedJson(example) },
    { weight: 1, arbitrary: nastyJson.map((v) => JSON.stringify(v) ?? '') },
    { weight: 1, arbitrary: nastyString(30) },
  );

const input = fc.record({
  challenge: fc.oneof(
    { weight: 4, arbitrary: fc.constant('Bearer realm="http://HOST/token",service="s"') },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'Bearer',
        'Basic realm="x"',
        'Bearer realm=""',
        'Bearer realm="file:///etc/passwd"',
        'Bearer realm="http://HOST/token',
        '',
      ),
    },
    { weight: 1, arbitrary: nastyString(20).map((s) => s.replace(/[^\t\x20-\x7e]/g, '')) },
  ),
  token: body({ token: 'T', expires_in: 300 }),
  tags: body({ name: 'r', tags: ['a', 'b'] }),
  manifest: fc.oneof(body(manifest), body(index)),
  contentType: fc.constantFrom(
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.oci.image.index.v1+json',
    'application/json',
    'text/plain',
    '',
  ),
});

describe('fuzz: registry responses', () => {
  test('tags, manifests and remote images: values or one clean error line', async () => {
    await fc.assert(
      fc.asyncProperty(input, async (a) => {
        answers = a;
        // A new client each time: no cached challenge or token carries over between cases.
        const client = new RegistryClient({ retry: { attempts: 1 } });
        const ref = parseReference(`${host}/r:x`);
        const repo = client.repository(ref);
        const clean = (e: unknown) =>
          expectCleanError(
            e,
            [KilnError, TypeError],
            /^(?!Cannot read|.* is not a function|.* is not iterable)/,
          );
        const steps = async () => {
          try {
            const tags = await repo.listTags();
            for (const t of tags) assert.equal(typeof t, 'string');
          } catch (e) {
            clean(e);
          }
          try {
            const m = await repo.getManifest('x');
            assert.ok(m.bytes.length >= 0 && typeof m.mediaType === 'string');
          } catch (e) {
            clean(e);
          }
          try {
            const img = await remoteImage(client, ref);
            if ('manifest' in img) await img.manifest();
          } catch (e) {
            clean(e);
          }
        };
        // The server keeps idle connections a minute: a response kiln left unread holds one of
        // the pooled sockets, and once the pool is used up a later case waits until this fires.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          steps(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error('a case waited for a pooled connection (a response was left unread)')),
              15_000,
            );
          }),
        ]).finally(() => clearTimeout(timer));
      }),
      // No shrinking: every shrink step of a leak would wait for the timer again.
      { ...params(150), endOnFailure: true },
    );
  });
});

// Found by the fuzzer (as a 36 s run): kiln left the 401 of a ping unread when the challenge was
// unusable, so each bad challenge kept one of the 16 pooled sockets until the server let go.
describe('fuzz regressions: registry responses', () => {
  test('20 refusals of an unusable challenge from a registry that never closes idle connections', async () => {
    const s = createServer((_req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Bearer realm=""' });
      res.end('{"errors":[]}');
    });
    s.keepAliveTimeout = 0; // never time out idle connections
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const h = `127.0.0.1:${(s.address() as AddressInfo).port}`;
    try {
      const run = (async () => {
        for (let i = 0; i < 20; i++) {
          const repo = new RegistryClient({ retry: { attempts: 1 } }).repository(parseReference(`${h}/r:x`));
          await assert.rejects(repo.listTags(), /bearer challenge without a realm/);
        }
      })();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        run,
        new Promise((_, rej) => {
          timer = setTimeout(() => rej(new Error('kiln hung waiting for a pooled connection')), 5000);
        }),
      ]).finally(() => clearTimeout(timer));
    } finally {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });
  test('a token answer of null, a tag list that is not JSON and a next-page link to another host are KilnErrors', async () => {
    answers = {
      challenge: 'Bearer realm="http://HOST/token"',
      token: 'null',
      tags: '{}',
      manifest: '{}',
      contentType: 'application/json',
    };
    const repo = () =>
      new RegistryClient({ retry: { attempts: 1 } }).repository(parseReference(`${host}/r:x`));
    await assert.rejects(repo().listTags(), (e: Error) => {
      expectCleanError(e, [KilnError], /token server answered JSON that is not an object$/);
      return true;
    });
    answers = { ...answers, token: '{"token":"T"}', tags: '' };
    await assert.rejects(repo().listTags(), (e: Error) => {
      expectCleanError(e, [KilnError], /answered something other than JSON$/);
      return true;
    });
    answers = {
      ...answers,
      tags: '{"tags":["a"]}',
      link: '<http://169.254.169.254/v2/r/tags/list?n=1>; rel="next"',
    };
    await assert.rejects(repo().listTags(), (e: Error) => {
      expectCleanError(e, [KilnError], /next-page link leaves the registry$/);
      return true;
    });
    answers.link = undefined;
  });
  test('an index whose platforms hold newlines gives one line (found after 2728 cases)', async () => {
    const idx = {
      ...index,
      manifests: [{ ...index.manifests[0]!, platform: { os: 'a\nb', architecture: 'amd64' } }],
    };
    answers = {
      ...answers,
      manifest: JSON.stringify(idx),
      contentType: 'application/vnd.oci.image.index.v1+json',
    };
    await assert.rejects(
      remoteImage(new RegistryClient({ retry: { attempts: 1 } }), parseReference(`${host}/r:x`)),
      (e: Error) => {
        expectCleanError(e, [KilnError], /\(it has a\\u000ab\/amd64\)$/);
        return true;
      },
    );
  });
});
