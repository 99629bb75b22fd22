// Reproducibility of the build image: maintainer scripts run, yet a second creation from the same
// lock (another directory, another umask, later) gives the same digest as the shared test stack.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Layout } from '../../src/layout/layout.ts';
import { DEFAULT_EPOCH } from '../../src/oci/memory.ts';
import { createStack } from '../../src/stack/create.ts';
import { ensureTestStack, testAccess } from '../helpers/stack.ts';

let work = '';
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const canRunSandbox = spawnSync('bwrap', ['--version']).status === 0 && process.getuid?.() === 0;

test('two creations of the build image from one lock give the same digest', {
  skip: !canRunSandbox && 'needs root and bubblewrap',
  timeout: 600_000,
}, async () => {
  const stack = await ensureTestStack({ roles: ['build'] });
  work = await mkdtemp(path.join(tmpdir(), 'kiln-build-repro-'));
  const old = process.umask(0o027);
  try {
    const made = await createStack(stack.config, {
      lock: stack.lock,
      access: await testAccess(stack.config),
      layout: await Layout.init(path.join(work, 'layout')),
      tags: stack.tags,
      epoch: DEFAULT_EPOCH,
      roles: ['build'],
      workDir: path.join(work, 'staging'),
    });
    const first = await (await Layout.open(stack.layoutDir)).resolve(stack.tags.build);
    assert.equal(made.build!.reused, false);
    assert.equal(made.build!.descriptor.digest, first.digest);
  } finally {
    process.umask(old);
  }
});
