import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../cli/exit-codes.ts';
import { BuildpackStore } from './buildpack-store.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-store-'));
});
after(() => rm(root, { recursive: true, force: true }));

async function put(dirId: string, version: string, toml: string, bin = true): Promise<void> {
  const dir = join(root, dirId, version);
  await mkdir(join(dir, 'bin'), { recursive: true });
  await writeFile(join(dir, 'buildpack.toml'), toml);
  if (bin) {
    await writeFile(join(dir, 'bin', 'build'), '#!/bin/sh\n');
    await chmod(join(dir, 'bin', 'build'), 0o755);
  }
}

describe('BuildpackStore', () => {
  test('lookup() reads <escaped id>/<version>, infers targets, gates exec-env by API', async () => {
    await put(
      'acme_node',
      '1.0.0',
      'api = "0.11"\n[buildpack]\nid = "acme/node"\nversion = "1.0.0"\nexec-env = ["test"]\n',
    );
    const store = new BuildpackStore(root);
    const bp = await store.lookup('acme/node', '1.0.0');
    assert.equal(bp.relativeDir, 'acme_node/1.0.0');
    assert.equal(bp.api.toString(), '0.11');
    assert.deepEqual(bp.targets, [{ os: 'linux' }]);
    assert.deepEqual(bp.execEnv, []);
    assert.equal(await store.lookup('acme/node', '1.0.0'), bp, 'cached');
    assert.equal((await store.lookup('acme/node')).version, '1.0.0', 'the only version');
  });

  test('several versions without a version named, a missing buildpack or a mismatched id are errors', async () => {
    await put('multi', '1.0.0', 'api = "0.12"\n[buildpack]\nid = "multi"\nversion = "1.0.0"\n');
    await put('multi', '2.0.0', 'api = "0.12"\n[buildpack]\nid = "multi"\nversion = "2.0.0"\n');
    await put('liar', '1.0.0', 'api = "0.12"\n[buildpack]\nid = "other"\nversion = "1.0.0"\n');
    const store = new BuildpackStore(root);
    await assert.rejects(store.lookup('multi'), /several versions .*1.0.0, 2.0.0/);
    await assert.rejects(store.lookup('absent', '1'), /absent@1 not found/);
    await assert.rejects(store.lookup('liar', '1.0.0'), /declares other@1.0.0, expected liar@1.0.0/);
  });

  test('an unsupported Buildpack API is exit 12; a composite exposes its order', async () => {
    await put('old', '1.0.0', 'api = "0.6"\n[buildpack]\nid = "old"\nversion = "1.0.0"\n');
    await put(
      'comp',
      '1.0.0',
      'api = "0.12"\n[buildpack]\nid = "comp"\nversion = "1.0.0"\n[[order]]\n[[order.group]]\nid = "old"\nversion = "1.0.0"\n',
      false,
    );
    const store = new BuildpackStore(root);
    await assert.rejects(store.lookup('old', '1.0.0'), (e: unknown) => exitCodeOf(e) === 12);
    const comp = await store.lookup('comp', '1.0.0');
    assert.equal(comp.order?.[0]?.group[0]?.id, 'old');
    assert.deepEqual(comp.targets, []);
  });
});
