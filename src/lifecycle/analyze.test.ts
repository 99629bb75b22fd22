import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { readAnalyzedToml } from '../cnb/analyzed-toml.ts';
import { loggerFrom } from '../internal/log.ts';
import { emptyImage } from '../oci/memory.ts';
import { addLabels } from '../oci/mutate.ts';
import { analyze } from './analyze.ts';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await fs.rm(t, { recursive: true, force: true });
});

const run = addLabels(emptyImage({ os: 'linux', architecture: 'arm64', variant: 'v8' }), {
  'io.buildpacks.base.distro.name': 'debian',
  'io.buildpacks.base.distro.version': '12',
  'io.buildpacks.base.id': 'io.kiln.stacks.bookworm',
});

test('analyze() without a previous image is a first build and records the run image target', async () => {
  const d = await fs.mkdtemp(path.join(tmpdir(), 'kiln-analyze-'));
  temps.push(d);
  const lines: string[] = [];
  const a = await analyze({
    runImage: { image: run, reference: 'r@sha256:' + '1'.repeat(64), name: 'example.com/run' },
    analyzedPath: path.join(d, 'analyzed.toml'),
    log: loggerFrom({ info: (m) => lines.push(m) }),
  });
  assert.deepEqual(a.previousMetadata.buildpacks, []);
  assert.match(lines.join('\n'), /first build/);
  const onDisk = await readAnalyzedToml(path.join(d, 'analyzed.toml'));
  assert.equal(onDisk.image, undefined);
  assert.deepEqual(onDisk['run-image']?.target, {
    os: 'linux',
    arch: 'arm64',
    'arch-variant': 'v8',
    distro: { name: 'debian', version: '12' },
    id: 'io.kiln.stacks.bookworm',
  });
});

test('analyze() reads the previous image label into analyzed.toml [metadata] with TOML keys', async () => {
  const d = await fs.mkdtemp(path.join(tmpdir(), 'kiln-analyze-'));
  temps.push(d);
  const label = JSON.stringify({
    buildpacks: [
      { key: 'a/b', version: '1', layers: { l: { sha: 'sha256:x', launch: true, data: { k: 1 } } } },
    ],
    runImage: { topLayer: 'sha256:t', reference: 'r' },
  });
  const prev = addLabels(emptyImage(), { 'io.buildpacks.lifecycle.metadata': label });
  const a = await analyze({
    previous: { image: prev, reference: 'app@sha256:' + '2'.repeat(64) },
    runImage: { image: run, reference: 'r', name: 'run' },
    analyzedPath: path.join(d, 'analyzed.toml'),
    log: loggerFrom({}),
  });
  assert.equal(a.previousMetadata.buildpacks?.[0]?.layers?.l?.sha, 'sha256:x');
  const onDisk = await readAnalyzedToml(path.join(d, 'analyzed.toml'));
  assert.equal(onDisk.image?.reference, 'app@sha256:' + '2'.repeat(64));
  assert.deepEqual(
    (onDisk.metadata as Record<string, { 'top-layer'?: string }>)['run-image']?.['top-layer'],
    'sha256:t',
  );
  // A broken label is ignored with a warning, not a failed build.
  const warns: string[] = [];
  const broken = addLabels(emptyImage(), { 'io.buildpacks.lifecycle.metadata': '{not json' });
  const b = await analyze({
    previous: { image: broken, reference: 'x' },
    runImage: { image: run, reference: 'r', name: 'run' },
    log: loggerFrom({ warn: (m) => warns.push(m) }),
  });
  assert.deepEqual(b.previousMetadata.buildpacks, []);
  assert.match(warns.join('\n'), /Ignoring previous image x/);
});
