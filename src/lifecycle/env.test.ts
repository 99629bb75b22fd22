import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { applyEnvDir, BuildEnv } from './env.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-env-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function envDir(name: string, files: Record<string, string>): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  for (const [k, v] of Object.entries(files)) await writeFile(join(d, k), v);
  return d;
}

describe('BuildEnv', () => {
  test('fromBase() keeps only the allowlist and path variables', () => {
    const env = BuildEnv.fromBase({
      PATH: '/bin',
      HOME: '/home/cnb',
      http_proxy: 'p',
      CNB_STACK_ID: 's',
      LD_LIBRARY_PATH: '/lib',
      AWS_SECRET_ACCESS_KEY: 'x',
      DOCKER_CONFIG: '/root/.docker',
    });
    assert.deepEqual(env.list(), {
      CNB_STACK_ID: 's',
      HOME: '/home/cnb',
      LD_LIBRARY_PATH: '/lib',
      PATH: '/bin',
      http_proxy: 'p',
    });
  });

  test('addRootDir() prepends existing bin/lib/include/pkgconfig with their sandbox paths', async () => {
    await mkdir(join(dir, 'layer/bin'), { recursive: true });
    await mkdir(join(dir, 'layer/lib'), { recursive: true });
    const env = BuildEnv.fromBase({ PATH: '/usr/bin' });
    await env.addRootDir(join(dir, 'layer'), '/layers/bp/layer');
    assert.equal(env.get('PATH'), '/layers/bp/layer/bin:/usr/bin');
    assert.equal(env.get('LD_LIBRARY_PATH'), '/layers/bp/layer/lib');
    assert.equal(env.get('LIBRARY_PATH'), '/layers/bp/layer/lib');
    assert.equal(env.get('CPATH'), '');
  });

  test('forExec() prepends platform path vars, overrides others, then build-config defaults', async () => {
    const platform = join(dir, 'platform');
    await envDir('platform/env', { PATH: '/p', FOO: 'platform' });
    const bc = join(dir, 'bc');
    await envDir('bc/env', { FOO: 'bc-default', BAR: 'bc-default', 'BAZ.append': 'z', 'BAZ.delim': '+' });
    const env = BuildEnv.fromBase({ PATH: '/usr/bin' });
    const vars = await env.forExec(platform, bc);
    assert.equal(vars.get('PATH'), '/p:/usr/bin');
    assert.equal(vars.get('FOO'), 'platform');
    assert.equal(vars.get('BAR'), 'bc-default');
    assert.equal(vars.get('BAZ'), 'z');
    const clear = await env.forExec(undefined, bc);
    assert.equal(clear.get('FOO'), 'bc-default');
    assert.equal(clear.get('PATH'), '/usr/bin');
  });
});

describe('applyEnvDir()', () => {
  test('applies files in name order with the lifecycle semantics', async () => {
    const d = await envDir('semantics', {
      A: 'a\n',
      'B.default': 'b',
      'C.append': 'c',
      'C.delim': ';',
      'D.prepend': 'd',
      'E.override': 'e',
      'F.unknown': 'f',
      'G.': 'g',
    });
    const vars = new Map([
      ['C', 'old'],
      ['D', 'old'],
      ['B', 'kept'],
      ['G', 'old'],
    ]);
    await applyEnvDir(vars, d, 'override');
    assert.equal(vars.get('A'), 'a\n');
    assert.equal(vars.get('B'), 'kept');
    assert.equal(vars.get('C'), 'old;c');
    assert.equal(vars.get('D'), 'dold');
    assert.equal(vars.get('E'), 'e');
    assert.equal(vars.has('F'), false);
    assert.equal(vars.get('G'), 'g:old');
  });

  test('a missing directory changes nothing; subdirectories are skipped', async () => {
    const vars = new Map<string, string>();
    await applyEnvDir(vars, join(dir, 'absent'), 'override');
    const d = await envDir('withsub', { X: 'x' });
    await mkdir(join(d, 'web'));
    await applyEnvDir(vars, d, 'default');
    assert.deepEqual([...vars], [['X', 'x']]);
  });
});
