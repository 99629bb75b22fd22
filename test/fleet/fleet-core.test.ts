// The fleet's core without a registry: the fleet file's schema (errors name the key), the SQLite
// state and queue (dedupe by inputs, one running job per image, leases taken over, retries with
// backoff, history limits), kpack's reasons, hook signatures, and git against real local repositories.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Fleet, parseFleet } from '../../src/fleet/declarations.ts';
import { Git } from '../../src/fleet/git.ts';
import { decide, desiredInputs, jobKey, keys, reconcile } from '../../src/fleet/reconcile.ts';
import { SqliteState } from '../../src/fleet/sqlite-state.ts';
import type { Inputs } from '../../src/fleet/state.ts';
import {
  gitHookRepositories,
  normalizeRepoUrl,
  registryPushes,
  verifyGitHook,
} from '../../src/fleet/webhooks.ts';
import { discardLogger } from '../../src/internal/log.ts';

const FILE = `
schema-version = 1
poll-interval = "30s"
[run-images.base]
image = "127.0.0.1:5000/stack/run:latest"
[builders.default]
image = "127.0.0.1:5000/stack/builder:latest"
[images.api]
tag = "127.0.0.1:5000/apps/api:latest"
builder = "default"
run-image = "base"
source = { git = "file:///srv/api.git", branch = "main" }
env = { BP_LOG = "debug" }
[images.web]
tag = "127.0.0.1:5000/apps/web:latest"
source = { path = "/srv/web" }
history-limit = 2
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-fleet-core-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('fleet file', () => {
  test('resolves names of builders and run images and sorts images', () => {
    const f = parseFleet(FILE, 'fleet.toml');
    assert.equal(f.pollIntervalMs, 30_000);
    assert.deepEqual(
      f.images.map((i) => i.name),
      ['api', 'web'],
    );
    const api = f.images[0]!;
    assert.equal(api.builder, '127.0.0.1:5000/stack/builder:latest');
    assert.equal(api.watchedRunImage, '127.0.0.1:5000/stack/run:latest');
    assert.deepEqual(api.source, { git: 'file:///srv/api.git', ref: 'refs/heads/main' });
    assert.equal(f.images[1]!.historyLimit, 2);
    assert.match(api.hash, /^[0-9a-f]{64}$/);
    // The hash follows what a build reads, not the history limit.
    const again = parseFleet(FILE.replace('history-limit = 2', 'history-limit = 3'), 'fleet.toml');
    assert.equal(again.images[1]!.hash, f.images[1]!.hash);
    assert.notEqual(parseFleet(FILE.replace('debug', 'info'), 'f').images[0]!.hash, api.hash);
  });

  test('signing-key is a path, part of the declaration (a change is CONFIG)', () => {
    const f = parseFleet(FILE, 'f');
    assert.equal(f.images[0]!.signingKey, undefined);
    const signed = parseFleet(FILE.replace('env = {', 'signing-key = "/etc/kiln/a.key"\nenv = {'), 'f');
    assert.equal(signed.images[0]!.signingKey, '/etc/kiln/a.key');
    assert.notEqual(signed.images[0]!.hash, f.images[0]!.hash);
    const other = parseFleet(FILE.replace('env = {', 'signing-key = "/etc/kiln/b.key"\nenv = {'), 'f');
    assert.notEqual(other.images[0]!.hash, signed.images[0]!.hash);
    assert.equal(signed.images[1]!.hash, f.images[1]!.hash, 'other images unchanged');
  });

  test('[[images]] with name is the same as [images.NAME]', () => {
    const arr = parseFleet(
      'schema-version = 1\n[[run-images]]\nname = "base"\nimage = "r/run:1"\n[[images]]\nname = "web"\ntag = "r/web:1"\nrun-image = "base"\nsource = { path = "/srv/web" }\n',
      'f',
    );
    assert.equal(arr.images[0]!.name, 'web');
    assert.equal(arr.images[0]!.watchedRunImage, 'r/run:1');
    assert.throws(
      () => parseFleet('schema-version = 1\n[[images]]\ntag = "r/web:1"\nsource = { path = "/x" }\n', 'f'),
      /f: images: /,
    );
  });

  const bad: [string, string, RegExp][] = [
    [
      'version',
      FILE.replace('schema-version = 1', 'schema-version = 2'),
      /fleet\.toml: schema-version: expected 1/,
    ],
    ['no version', FILE.replace('schema-version = 1', ''), /schema-version/],
    ['branch', FILE.replace('branch = "main"', 'branch = "--upload-pack=x"'), /images\.api\.source/],
    ['unknown key', FILE.replace('history-limit = 2', 'histroy = 2'), /images\.web: .*histroy/],
    [
      'both refs',
      FILE.replace('branch = "main"', 'branch = "main", tag = "v1"'),
      /images\.api\.source: expected exactly one of branch or tag/,
    ],
    [
      'builder',
      FILE.replace('builder = "default"', 'builder = "nope"'),
      /images\.api\.builder: "nope" is neither/,
    ],
    ['relative path', FILE.replace('/srv/web', 'srv/web'), /images\.web\.source/],
    [
      'duplicate tag',
      FILE.replace('apps/web', 'apps/api'),
      /images\.web\.tag: .* already the tag of images\.api/,
    ],
    ['ext transport', FILE.replace('file:///srv/api.git', 'ext::sh -c touch% /tmp/x'), /images\.api\.source/],
    ['toml', `${FILE}\n[[[`, /fleet\.toml: invalid TOML/],
    ['poll', FILE.replace('"30s"', '"soon"'), /poll-interval: expected a duration/],
    ['binding', FILE.replace('env = {', 'bindings = ["x=rel"]\nenv = {'), /images\.api\.bindings\[0\]/],
    [
      'relative signing key',
      FILE.replace('env = {', 'signing-key = "keys/a.key"\nenv = {'),
      /images\.api\.signing-key: expected the absolute path/,
    ],
    [
      'signing key in the app',
      FILE.replace('history-limit = 2', 'signing-key = "/srv/web/k.key"'),
      /images\.web\.signing-key: \/srv\/web\/k\.key is inside source\.path/,
    ],
  ];
  for (const [what, text, re] of bad)
    test(`refuses a bad file (${what}), naming the key`, () => {
      assert.throws(
        () => parseFleet(text, 'fleet.toml'),
        (e: Error) => {
          assert.match(e.message, re);
          assert.equal(e.name, 'FleetFileError');
          return true;
        },
      );
    });
});

describe('state and queue (SQLite)', () => {
  let now = 1_000_000;
  let state: SqliteState;
  let fleet: Fleet;
  before(() => {
    state = SqliteState.open(path.join(dir, 'state.db'), () => now);
    fleet = parseFleet(FILE, 'fleet.toml');
  });
  after(() => state.close());
  const inputs = (commit: string): Inputs => ({ declHash: 'h', commit });

  test('apply adds, changes and removes; removed images stop being managed', async () => {
    assert.deepEqual(await state.apply(fleet), { added: ['api', 'web'], changed: [], removed: [] });
    assert.deepEqual(await state.apply(fleet), { added: [], changed: [], removed: [] });
    const fewer = parseFleet(FILE.replace(/\[images\.web\][\s\S]*$/, ''), 'f');
    assert.deepEqual(await state.apply(fewer), { added: [], changed: [], removed: ['web'] });
    assert.equal((await state.image('web'))?.managed, false);
    assert.deepEqual(
      (await state.fleet())?.images.map((i) => i.name),
      ['api'],
    );
    assert.deepEqual(await state.apply(fleet), { added: [], changed: ['web'], removed: [] });
  });

  test('a job is queued once per key; a newer one supersedes a queued one of the same image', async () => {
    const j = {
      image: 'api',
      kind: 'build' as const,
      reasons: ['CONFIG' as const],
      inputs: inputs('a'),
      key: 'k1',
    };
    assert.equal(await state.enqueue(j), true);
    assert.equal(await state.enqueue(j), false);
    assert.equal(await state.enqueue({ ...j, key: 'k2', inputs: inputs('b') }), true);
    assert.equal((await state.history('api')).find((x) => x.key === 'k1')?.state, 'superseded');
    assert.deepEqual(await state.queueDepth(), { queued: 1, running: 0 });
  });

  test('one running job per image; an expired lease is taken over; results count once', async () => {
    const a = await state.claim('w1', 1000);
    assert.equal(a?.key, 'k2');
    await state.enqueue({ image: 'api', kind: 'build', reasons: ['COMMIT'], inputs: inputs('c'), key: 'k3' });
    assert.equal(await state.claim('w2', 1000), undefined, 'api is being built by w1');
    now += 5000; // w1 died: its lease ran out
    const b = await state.claim('w2', 1000);
    assert.equal(b?.id, a!.id, 'the expired job is taken over first');
    assert.equal(b?.attempts, 2);
    assert.equal(await state.renew(a!.id, 'w1', 1000), false);
    await state.finish(
      a!.id,
      'w1',
      { ok: true, digest: 'sha256:old', kind: 'build', inputs: inputs('b') },
      'late\n',
    );
    assert.equal((await state.job(a!.id))?.state, 'running', 'a worker that lost its lease records nothing');
    await state.finish(
      b!.id,
      'w2',
      { ok: true, digest: 'sha256:b', kind: 'build', inputs: inputs('b') },
      'done\n',
    );
    const img = await state.image('api');
    assert.equal(img?.digest, 'sha256:b');
    assert.deepEqual(img?.inputs, inputs('b'));
    assert.equal(img?.last?.state, 'succeeded');
    assert.equal((await state.job(b!.id))?.log, 'done\n');
  });

  test('failures are retried with backoff, then stay failed', async () => {
    let job = await state.claim('w1', 1000);
    assert.equal(job?.key, 'k3');
    for (let i = 1; i <= 4; i++) {
      await state.finish(
        job!.id,
        'w1',
        { ok: false, error: `boom ${i}`, retryAt: now + 10_000 },
        `try ${i}\n`,
      );
      assert.equal(await state.claim('w1', 1000), undefined, 'not before the backoff');
      now += 10_001;
      const next = await state.claim('w1', 1000);
      if (i < 4) {
        assert.equal(next?.id, job!.id);
        job = next;
      } else assert.equal(next, undefined);
    }
    const failed = await state.job(job!.id);
    assert.equal(failed?.state, 'failed');
    assert.equal(failed?.error, 'boom 4');
    assert.match(failed!.log, /try 1\n[\s\S]*try 4\n/);
    // The same inputs are not queued again; new inputs are.
    assert.equal(
      await state.enqueue({
        image: 'api',
        kind: 'build',
        reasons: ['COMMIT'],
        inputs: inputs('c'),
        key: 'k3',
      }),
      false,
    );
  });

  test('release hands a job back; history keeps the configured number of entries', async () => {
    for (const k of ['w-1', 'w-2', 'w-3']) {
      await state.enqueue({ image: 'web', kind: 'build', reasons: ['TRIGGER'], inputs: inputs(k), key: k });
      const j = await state.claim('w', 1000);
      assert.equal(j?.key, k);
      await state.release(j!.id, 'w');
      const again = await state.claim('w', 1000);
      assert.equal(again?.id, j!.id);
      assert.equal(again?.attempts, 1, 'a handed-back job is not counted as a failed attempt');
      await state.finish(
        j!.id,
        'w',
        { ok: true, digest: `sha256:${k}`, kind: 'build', inputs: inputs(k) },
        '',
      );
    }
    assert.deepEqual(
      (await state.history('web')).map((j) => j.key),
      ['w-3', 'w-2'],
    );
    const counts = await state.counts();
    assert.ok(counts.some((c) => c.reason === 'TRIGGER' && c.state === 'succeeded' && c.n === 2));
  });
});

describe('reasons', () => {
  const d = parseFleet(FILE, 'f').images[0]!;
  const base: Inputs = { declHash: d.hash, runImage: 'r1', builder: 'b1', buildpacks: ['x@1'], commit: 'c1' };
  test('first build is CONFIG; each input change has its reason; a run image alone is a rebase', () => {
    assert.deepEqual(decide(d, undefined, base), { reasons: ['CONFIG'], kind: 'build' });
    assert.equal(decide(d, base, base), undefined);
    assert.deepEqual(decide(d, base, { ...base, declHash: 'x' }), { reasons: ['CONFIG'], kind: 'build' });
    assert.deepEqual(decide(d, base, { ...base, commit: 'c2' }), { reasons: ['COMMIT'], kind: 'build' });
    assert.deepEqual(decide(d, base, { ...base, builder: 'b2' }), { reasons: ['BUILDER'], kind: 'build' });
    assert.deepEqual(decide(d, base, { ...base, builder: 'b2', buildpacks: ['x@2'] }), {
      reasons: ['BUILDPACK'],
      kind: 'build',
    });
    assert.deepEqual(decide(d, base, { ...base, runImage: 'r2' }), { reasons: ['STACK'], kind: 'rebase' });
    assert.deepEqual(decide({ ...d, rebase: false }, base, { ...base, runImage: 'r2' }), {
      reasons: ['STACK'],
      kind: 'build',
    });
    assert.deepEqual(decide(d, base, { ...base, runImage: 'r2', commit: 'c2' }), {
      reasons: ['COMMIT', 'STACK'],
      kind: 'build',
    });
    assert.deepEqual(decide(d, base, { ...base, trigger: 't' }), { reasons: ['TRIGGER'], kind: 'build' });
    assert.notEqual(jobKey('api', 'build', base), jobKey('api', 'build', { ...base, commit: 'c2' }));
  });

  test('reconcile waits for every observation, then queues once', async () => {
    const s = SqliteState.open(path.join(dir, 'r.db'));
    try {
      const f = parseFleet(FILE, 'f');
      await s.apply(f);
      assert.equal(
        await reconcile(s, discardLogger),
        1,
        'web (a directory source, nothing watched) is queued at once',
      );
      await s.observe(keys.run(d.watchedRunImage!), 'sha256:r');
      await s.observe(keys.builder(d.builder!), 'sha256:b');
      assert.equal(desiredInputs(d, await s.observations()), undefined, 'the commit is not known yet');
      await s.observe(keys.git('file:///srv/api.git', 'refs/heads/main'), 'c'.repeat(40));
      assert.equal(await reconcile(s, discardLogger), 1);
      assert.equal(await reconcile(s, discardLogger), 0);
      assert.deepEqual(await s.queueDepth(), { queued: 2, running: 0 });
    } finally {
      await s.close();
    }
  });
});

describe('hooks', () => {
  const body = Buffer.from(JSON.stringify({ repository: { clone_url: 'https://git.example/acme/api.git' } }));
  const sig = createHmac('sha256', 'sekrit-123').update(body).digest('hex');
  test('GitHub, GitLab and Gitea secrets are checked; anything else is refused', () => {
    assert.deepEqual(verifyGitHook({ 'x-hub-signature-256': `sha256=${sig}` }, body, 'sekrit-123'), {
      ok: true,
      forge: 'github',
    });
    assert.equal(
      verifyGitHook({ 'x-hub-signature-256': `sha256=${sig.replace(/.$/, '0')}` }, body, 'sekrit-123').ok,
      sig.endsWith('0'),
    );
    assert.equal(
      verifyGitHook({ 'x-hub-signature-256': `sha256=${sig}` }, Buffer.from(`${body} `), 'sekrit-123').ok,
      false,
    );
    assert.deepEqual(verifyGitHook({ 'x-gitlab-token': 'sekrit-123' }, body, 'sekrit-123'), {
      ok: true,
      forge: 'gitlab',
    });
    assert.equal(verifyGitHook({ 'x-gitlab-token': 'sekrit-12' }, body, 'sekrit-123').ok, false);
    assert.deepEqual(verifyGitHook({ 'x-gitea-signature': sig }, body, 'sekrit-123'), {
      ok: true,
      forge: 'gitea',
    });
    assert.equal(verifyGitHook({}, body, 'sekrit-123').ok, false);
  });
  test('payloads name repositories; URLs of one repository compare equal', () => {
    assert.deepEqual(gitHookRepositories(JSON.parse(body.toString())), ['https://git.example/acme/api.git']);
    assert.equal(
      normalizeRepoUrl('https://Git.Example/acme/api.git/'),
      normalizeRepoUrl('git@git.example:acme/api'),
    );
    assert.equal(normalizeRepoUrl('file:///srv/x.git'), '/srv/x');
    assert.deepEqual(
      registryPushes({
        events: [
          { action: 'pull', target: { repository: 'a' } },
          { action: 'push', target: { repository: 'blob', mediaType: 'application/octet-stream' } },
          {
            action: 'push',
            target: { repository: 'stack/run', url: 'http://127.0.0.1:5000/v2/stack/run/manifests/sha256:x' },
          },
        ],
      }),
      ['stack/run'],
    );
    assert.deepEqual(registryPushes({ events: 'x' }), []);
  });
});

describe('git (real local repositories)', () => {
  test('ls-remote finds branches and annotated tags; checkout fetches exactly the commit', async () => {
    const repo = path.join(dir, 'repo');
    const g = (...a: string[]) => execFileSync('git', ['-C', repo, ...a], { encoding: 'utf8' }).trim();
    execFileSync('git', ['init', '-q', '-b', 'main', repo]);
    await writeFile(path.join(repo, 'f'), 'one\n');
    g('add', 'f');
    g('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'one');
    const first = g('rev-parse', 'HEAD');
    g('-c', 'user.name=t', '-c', 'user.email=t@t', 'tag', '-a', '-m', 'v1', 'v1');
    await writeFile(path.join(repo, 'f'), 'two\n');
    g('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qam', 'two');
    const git = new Git({ env: { PATH: process.env.PATH } });
    assert.equal(await git.lsRemote(`file://${repo}`, 'refs/heads/main'), g('rev-parse', 'HEAD'));
    assert.equal(await git.lsRemote(repo, 'refs/tags/v1'), first);
    assert.equal(await git.lsRemote(repo, 'refs/heads/nope'), undefined);
    await assert.rejects(git.lsRemote(path.join(dir, 'absent'), 'refs/heads/main'), /git ls-remote/);
    const out = path.join(dir, 'checkout');
    await git.checkout(`file://${repo}`, first, out);
    assert.equal(await readFile(path.join(out, 'f'), 'utf8'), 'one\n');
  });
});
