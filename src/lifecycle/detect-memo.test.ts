import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDirs } from '../../test/helpers/temp-dirs.ts';
import { loggerFrom } from '../internal/log.ts';
import { DetectMemo, type DetectMemoInputs } from './detect-memo.ts';
import type { PhaseOptions } from './phase-context.ts';

const temp = tempDirs('kiln-detect-memo-');

/** A build's directories: platform (with an env file), a mounted CA file, app, layers. */
async function dirs() {
  const base = await temp();
  const d = {
    base,
    platform: path.join(base, 'platform'),
    ca: path.join(base, 'ca.pem'),
    app: path.join(base, 'app'),
    layers: path.join(base, 'layers'),
  };
  await mkdir(path.join(d.platform, 'env'), { recursive: true });
  await writeFile(path.join(d.platform, 'env', 'FOO'), 'bar');
  await writeFile(d.ca, 'CERT');
  await mkdir(d.app);
  await mkdir(d.layers);
  return d;
}

function inputs(
  d: Awaited<ReturnType<typeof dirs>>,
  change: Partial<DetectMemoInputs> = {},
): DetectMemoInputs {
  // Only the fields a detection depends on; the collaborators (executor, store) play no part.
  const phase = {
    platformDir: d.platform,
    baseEnv: { PATH: '/usr/bin:/bin', HOME: '/home/cnb' },
    extraEnv: { SSL_CERT_FILE: '/etc/ssl/kiln/ca.pem' },
    extraMounts: [{ src: d.ca, dst: '/etc/ssl/kiln/ca.pem', readonly: true }],
    target: { os: 'linux', arch: 'amd64' },
    network: 'host',
    uid: 1000,
    gid: 1000,
  } as unknown as PhaseOptions;
  return {
    builderDigest: `sha256:${'a'.repeat(64)}`,
    order: [{ group: [{ id: 'kiln/a', version: '1.0.0', optional: false }] }],
    phase,
    app: { fingerprint: 'sha256:app1', recent: [] },
    ...change,
  };
}

const GROUP = '[[group]]\nid = "kiln/a"\nversion = "1.0.0"\napi = "0.12"\n';
const PLAN =
  '[[entries]]\n[[entries.providers]]\nid = "kiln/a"\nversion = "1.0.0"\n[[entries.requires]]\nname = "a"\n';

describe('DetectMemo', () => {
  test('the key follows every input: builder, order, env, target, network, platform files, mounted files, app', async () => {
    const d = await dirs();
    const base = await DetectMemo.key(inputs(d));
    assert.ok(base);
    assert.equal(await DetectMemo.key(inputs(d)), base, 'stable');
    const i = inputs(d);
    const variants: DetectMemoInputs[] = [
      inputs(d, { builderDigest: `sha256:${'b'.repeat(64)}` }),
      inputs(d, { order: [{ group: [{ id: 'kiln/b', version: '1.0.0', optional: false }] }] }),
      inputs(d, { phase: { ...i.phase, baseEnv: { ...i.phase.baseEnv, HTTPS_PROXY: 'http://p:3128' } } }),
      inputs(d, { phase: { ...i.phase, target: { ...i.phase.target, arch: 'arm64' } } }),
      inputs(d, { phase: { ...i.phase, network: 'none' } }),
      inputs(d, { phase: { ...i.phase, execEnv: 'test' } }),
      inputs(d, { app: { fingerprint: 'sha256:app2', recent: [] } }),
    ];
    for (const v of variants) assert.notEqual(await DetectMemo.key(v), base);
    // Isolated networks: the mode and the allowed host ports count, not the per-build paths.
    const isolated = (allowed: string[], n: number) =>
      inputs(d, {
        phase: {
          ...i.phase,
          network: {
            mode: 'isolated',
            netns: `/proc/${n}/fd/20`,
            resolvConf: `/tmp/kiln-net-${n}/resolv.conf`,
            hosts: `/tmp/kiln-net-${n}/hosts`,
            allowed,
          },
        },
      });
    const iso = await DetectMemo.key(isolated([], 1));
    assert.notEqual(iso, base);
    assert.equal(await DetectMemo.key(isolated([], 2)), iso, 'a new build namespace is the same network');
    assert.notEqual(await DetectMemo.key(isolated(['127.0.0.1:4873'], 1)), iso, '--allow-host');
    assert.notEqual(
      await DetectMemo.key(isolated(['127.0.0.1:4874'], 1)),
      await DetectMemo.key(isolated(['127.0.0.1:4873'], 1)),
    );
    await writeFile(path.join(d.platform, 'env', 'FOO'), 'baz');
    assert.notEqual(await DetectMemo.key(inputs(d)), base, 'platform env file content');
    await writeFile(path.join(d.platform, 'env', 'FOO'), 'bar');
    await writeFile(d.ca, 'OTHER CERT');
    assert.notEqual(await DetectMemo.key(inputs(d)), base, 'mounted file content');
  });

  test('a mount too large to hash (a host directory) turns the memo off', async () => {
    const d = await dirs();
    const i = inputs(d);
    const usr = { src: '/usr', dst: '/usr', readonly: true };
    const t0 = performance.now();
    assert.equal(
      await DetectMemo.key({
        ...i,
        phase: { ...i.phase, extraMounts: [...(i.phase.extraMounts ?? []), usr] },
      }),
      undefined,
    );
    assert.ok(performance.now() - t0 < 2000, 'found out by listing, not by reading /usr');
  });

  test('reuse gives back the recorded group and plan (files written into layers) only under the same key', async () => {
    const d = await dirs();
    const memo = new DetectMemo(path.join(d.base, 'cache', 'detect.json'));
    const key = (await DetectMemo.key(inputs(d)))!;
    assert.equal(await memo.reuse(key, d.app, d.layers), undefined, 'nothing recorded yet');
    await writeFile(path.join(d.layers, 'group.toml'), GROUP);
    await writeFile(path.join(d.layers, 'plan.toml'), PLAN);
    await memo.record(key, { fingerprint: 'sha256:app1', recent: [] }, d.app, d.layers);
    await rm(path.join(d.layers, 'group.toml'));
    await rm(path.join(d.layers, 'plan.toml'));

    assert.equal(await memo.reuse('sha256:other', d.app, d.layers), undefined);
    const r = await memo.reuse(key, d.app, d.layers);
    assert.ok(r);
    assert.deepEqual(
      r.group.map((g) => `${g.id}@${g.version}`),
      ['kiln/a@1.0.0'],
    );
    assert.equal(r.plan.entries[0]?.requires[0]?.name, 'a');
    assert.equal(await readFile(path.join(d.layers, 'group.toml'), 'utf8'), GROUP);
    assert.equal(await readFile(path.join(d.layers, 'plan.toml'), 'utf8'), PLAN);
  });

  test('files changed just before the recording are compared by content', async () => {
    const d = await dirs();
    const memo = new DetectMemo(path.join(d.base, 'detect.json'));
    await writeFile(path.join(d.layers, 'group.toml'), GROUP);
    await writeFile(path.join(d.layers, 'plan.toml'), PLAN);
    await writeFile(path.join(d.app, 'package.json'), '{"name":"a"}');
    await memo.record('sha256:k', { fingerprint: 'sha256:app1', recent: ['package.json'] }, d.app, d.layers);
    assert.ok(await memo.reuse('sha256:k', d.app, d.layers), 'same content');
    // The same listing (a rewrite within one timestamp tick) but other bytes: detect again.
    await writeFile(path.join(d.app, 'package.json'), '{"name":"b"}');
    assert.equal(await memo.reuse('sha256:k', d.app, d.layers), undefined);
    await rm(path.join(d.app, 'package.json'));
    assert.equal(await memo.reuse('sha256:k', d.app, d.layers), undefined, 'gone');
  });

  test('detect() runs the phase once, then reuses it until the inputs change or a fresh detection is asked for', async () => {
    const d = await dirs();
    const memo = new DetectMemo(path.join(d.base, 'detect.json'));
    const lines: string[] = [];
    const log = loggerFrom({ info: (m: string) => lines.push(m) });
    let runs = 0;
    const run = async () => {
      runs++;
      await writeFile(path.join(d.layers, 'group.toml'), GROUP);
      await writeFile(path.join(d.layers, 'plan.toml'), PLAN);
      return {
        group: [{ id: 'kiln/a', version: '1.0.0', api: '0.12' }],
        plan: { entries: [] },
        runs: new Map(),
      };
    };
    const phase = { ...inputs(d).phase, appDir: d.app, layersDir: d.layers };
    const i = inputs(d, { phase });
    await memo.detect(i, { fresh: false, log }, run);
    const again = await memo.detect(i, { fresh: false, log }, run);
    assert.equal(runs, 1);
    assert.deepEqual(
      again.group.map((g) => g.id),
      ['kiln/a'],
    );
    assert.ok(lines.some((l) => l.startsWith("Reusing the previous build's detection")));
    await memo.detect(i, { fresh: true, log }, run);
    assert.equal(runs, 2, '--clear-cache');
    await memo.detect(
      inputs(d, { phase, app: { fingerprint: 'sha256:edited', recent: [] } }),
      { fresh: false, log },
      run,
    );
    assert.equal(runs, 3, 'app changed');
  });

  test('an unreadable memo is a miss, never an error', async () => {
    const d = await dirs();
    const file = path.join(d.base, 'detect.json');
    await writeFile(file, '{not json');
    assert.equal(await new DetectMemo(file).reuse('sha256:k', d.app, d.layers), undefined);
    await writeFile(
      file,
      JSON.stringify({ key: 'sha256:k', recent: {}, groupToml: 'group = 5', planToml: '' }),
    );
    assert.equal(await new DetectMemo(file).reuse('sha256:k', d.app, d.layers), undefined);
  });
});
