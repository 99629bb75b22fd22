import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiVersion } from './api.ts';
import { applyEnvOp, launchEnvOps } from './launch-env.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-lenv-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function put(rel: string, content: string) {
  await mkdir(join(dir, rel, '..'), { recursive: true });
  await writeFile(join(dir, rel), content);
}

describe('launchEnvOps()', () => {
  test('orders root dirs, env/, env.launch/ and env.launch/<proc>/ as the launcher does', async () => {
    await mkdir(join(dir, 'a/l1/bin'), { recursive: true });
    await mkdir(join(dir, 'a/l2/lib'), { recursive: true });
    await put('a/l1/env/FOO', 'one');
    await put('a/l1/env.launch/FOO.append', 'two');
    await put('a/l1/env.launch/FOO.delim', ',');
    await put('a/l2/env.launch/web/FOO.prepend', 'zero');
    await put('a/l2/env.launch/web/BAR.default', 'bar\n');
    await put('a/l2/env.build/NOPE', 'x');
    const bps = [
      {
        id: 'a',
        api: ApiVersion.parse('0.12'),
        layers: [
          { hostDir: join(dir, 'a/l1'), imageDir: '/layers/a/l1' },
          { hostDir: join(dir, 'a/l2'), imageDir: '/layers/a/l2' },
        ],
      },
    ];
    const web = await launchEnvOps(bps, 'web');
    assert.deepEqual(web, [
      { name: 'PATH', op: 'prepend', value: '/layers/a/l1/bin', delim: ':' },
      { name: 'LD_LIBRARY_PATH', op: 'prepend', value: '/layers/a/l2/lib', delim: ':' },
      { name: 'FOO', op: 'override', value: 'one' },
      { name: 'FOO', op: 'append', value: 'two', delim: ',' },
      { name: 'BAR', op: 'default', value: 'bar\n' },
      { name: 'FOO', op: 'prepend', value: 'zero' },
    ]);
    const vars = new Map([['PATH', '/usr/bin']]);
    for (const op of web) applyEnvOp(vars, op);
    assert.equal(vars.get('FOO'), 'zeroone,two');
    assert.equal(vars.get('PATH'), '/layers/a/l1/bin:/usr/bin');
    assert.equal(vars.get('BAR'), 'bar\n');
    const none = await launchEnvOps(bps);
    assert.equal(
      none.some((o) => o.name === 'BAR'),
      false,
    );
  });
});
