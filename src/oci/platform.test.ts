import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KilnError, UsageError } from '../internal/errors.ts';
import {
  checkPlatform,
  hostPlatform,
  MissingPlatformError,
  parsePlatform,
  parsePlatforms,
  pickManifest,
  platformMatches,
  platformString,
} from './platform.ts';
import type { Descriptor } from './schema.ts';

const d = (n: number, platform?: Descriptor['platform']): Descriptor => ({
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: 1,
  ...(platform ? { platform } : {}),
});

test('parsePlatform and parsePlatforms read os/arch[/variant] lists and refuse bad ones', () => {
  assert.deepEqual(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.deepEqual(parsePlatforms('linux/amd64,linux/arm64').map(platformString), [
    'linux/amd64',
    'linux/arm64',
  ]);
  for (const bad of ['linux', 'linux/', '/amd64', 'a/b/c/d', 'linux/AMD64', 'linux/amd 64'])
    assert.throws(() => parsePlatform(bad), UsageError, bad);
  assert.throws(() => parsePlatforms('linux/amd64,linux/amd64'), /listed twice/);
  assert.throws(() => parsePlatforms(','), UsageError);
});

test('hostPlatform maps Node architectures to OCI ones', () => {
  assert.deepEqual(hostPlatform('x64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(hostPlatform('arm64'), { os: 'linux', architecture: 'arm64' });
  assert.deepEqual(hostPlatform('arm'), { os: 'linux', architecture: 'arm', variant: 'v7' });
});

test('platformMatches: arm64 without a variant is v8; other variants must be equal when asked for', () => {
  const arm64 = { os: 'linux', architecture: 'arm64' };
  assert.ok(platformMatches({ ...arm64, variant: 'v8' }, arm64));
  assert.ok(platformMatches(arm64, { ...arm64, variant: 'v8' }));
  assert.ok(
    !platformMatches(
      { os: 'linux', architecture: 'arm', variant: 'v6' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ),
  );
  assert.ok(!platformMatches({ os: 'linux', architecture: 'amd64' }, arm64));
  assert.ok(!platformMatches(undefined, arm64));
});

test('pickManifest takes the wanted platform, prefers an exact variant, and names what is missing in one line', () => {
  const list = [
    d(1, { os: 'linux', architecture: 'amd64' }),
    d(2, { os: 'linux', architecture: 'arm', variant: 'v6' }),
    d(3, { os: 'linux', architecture: 'arm', variant: 'v7' }),
    d(4),
  ];
  assert.equal(
    pickManifest(list, { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x').digest,
    list[2]!.digest,
  );
  assert.equal(pickManifest(list, { os: 'linux', architecture: 'amd64' }, 'x').digest, list[0]!.digest);
  const e = (() => {
    try {
      pickManifest(list, { os: 'linux', architecture: 'arm64' }, 'registry.example/builder:1');
    } catch (err) {
      return err;
    }
  })();
  assert.ok(e instanceof MissingPlatformError && e instanceof KilnError);
  assert.equal(
    e.message,
    'registry.example/builder:1 has no linux/arm64 image (it has linux/amd64, linux/arm/v6, linux/arm/v7, (none))',
  );
});

test('checkPlatform refuses a single image of another platform', () => {
  checkPlatform({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64' }, 'run');
  assert.throws(
    () =>
      checkPlatform(
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
        'local:run',
      ),
    /^MissingPlatformError: local:run has no linux\/arm64 image \(it has linux\/amd64\)$/,
  );
});
