import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseVolume } from './build-volumes.ts';
import { creationTime, parseCacheFlag, resolvePackBuildFlags } from './pack-build-flags.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'kiln-packflags-'));
writeFileSync(path.join(dir, 'f.txt'), 'x');
symlinkSync(path.join(dir, 'f.txt'), path.join(dir, 'link'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('--volume', () => {
  test('host:target[:ro|rw], read-only by default; the host path resolved once', () => {
    assert.deepEqual(parseVolume(`${dir}:/opt/data`, '/'), { src: dir, dst: '/opt/data', readonly: true });
    assert.deepEqual(parseVolume('f.txt:/opt/f:rw', dir), {
      src: path.join(dir, 'f.txt'),
      dst: '/opt/f',
      readonly: false,
    });
    assert.equal(parseVolume('link:/opt/f', dir).src, path.join(dir, 'f.txt'));
    assert.equal(parseVolume(`${dir}:/opt/data/:ro`, '/').dst, '/opt/data');
  });

  for (const [spec, why] of [
    ['x', /expected <host path>:<target path>/],
    [`${dir}:relative`, /absolute path/],
    [`${dir}:/opt/../cnb`, /absolute path without/],
    [`${dir}:/cnb`, /would cover \/cnb/],
    [`${dir}:/cnb/buildpacks/x`, /would cover \/cnb/],
    [`${dir}:/layers`, /would cover \/layers/],
    [`${dir}:/workspace/app`, /would cover \/workspace/],
    [`${dir}:/platform/bindings`, /would cover \/platform/],
    [`${dir}:/proc`, /would cover \/proc/],
    [`${dir}:/dev/shm`, /would cover \/dev/],
    [`${dir}:/sys`, /would cover \/sys/],
    [`${dir}:/`, /would cover|mounted by the sandbox/],
    [`${dir}:/tmp`, /mounted by the sandbox itself/],
    [`${dir}:/home`, /mounted by the sandbox itself/],
    [`${dir}:/opt/x:rx`, /unsupported option "rx"/],
    [`${dir}/nope:/opt/x`, /does not exist/],
  ] as const) {
    test(`refused: ${spec.replace(dir, 'DIR')}`, () => {
      assert.throws(() => parseVolume(spec, '/'), why);
    });
  }
});

describe('other flags', () => {
  test('--creation-time: now or seconds', () => {
    assert.equal(creationTime('now', 1_700_000_000_999), 1_700_000_000);
    assert.equal(creationTime('315532800', 0), 315532800);
    assert.throws(() => creationTime('2024-01-01', 0), /expected now or seconds/);
    assert.throws(() => creationTime('-1', 0), /expected now or seconds/);
  });

  test('--cache: image, volume, bind; launch and bad keys refused', () => {
    assert.deepEqual(parseCacheFlag('type=build;format=image;name=reg.io/c:1', '/v', '/w'), {
      image: 'reg.io/c:1',
    });
    assert.deepEqual(parseCacheFlag('type=build;format=volume;name=my-cache', '/v', '/w'), {
      dir: '/v/my-cache',
    });
    assert.deepEqual(parseCacheFlag('type=build;format=bind;source=c', '/v', '/w'), { dir: '/w/c' });
    assert.throws(() => parseCacheFlag('type=build;format=volume;name=../x', '/v', '/w'), /volume name/);
    assert.throws(() => parseCacheFlag('type=launch;format=volume;name=x', '/v', '/w'), /no launch cache/);
    assert.throws(() => parseCacheFlag('type=build;format=image', '/v', '/w'), /needs name=/);
    assert.throws(() => parseCacheFlag('type=build;colour=red', '/v', '/w'), /unknown key "colour"/);
  });

  test('--uid 0 and -r are refused; --uid/--gid resolve', () => {
    const io = { cwd: '/', now: 0 };
    assert.deepEqual(resolvePackBuildFlags({ volume: [], uid: '2000', gid: '3000' }, io).buildUser, {
      uid: 2000,
      gid: 3000,
    });
    assert.throws(() => resolvePackBuildFlags({ volume: [], uid: '0' }, io), /--uid 0/);
    assert.throws(
      () => resolvePackBuildFlags({ volume: [], gid: 'x' }, io),
      /--gid x: expected a whole number/,
    );
    assert.throws(
      () => resolvePackBuildFlags({ volume: [], buildpackRegistry: 'r' }, io),
      /no buildpack registry/,
    );
  });
});

describe('--workspace with --volume', () => {
  test('a volume may not cover the workspace; /workspace stays refused by default', () => {
    assert.throws(() => parseVolume(`${dir}:/srv/app/data`, '/', '/srv/app'), /would cover \/srv\/app/);
    assert.throws(() => parseVolume(`${dir}:/srv`, '/', '/srv/app'), /would cover \/srv\/app/);
    assert.equal(parseVolume(`${dir}:/srv/other`, '/', '/srv/app').dst, '/srv/other');
    assert.throws(() => parseVolume(`${dir}:/workspace/x`, '/'), /would cover \/workspace/);
  });

  test('resolvePackBuildFlags: the default is no workspace at all; another is checked', () => {
    const io = { cwd: dir, now: 0 };
    assert.equal(resolvePackBuildFlags({ volume: [] }, io).workspace, undefined);
    assert.equal(resolvePackBuildFlags({ volume: [], workspace: '/workspace' }, io).workspace, undefined);
    assert.equal(resolvePackBuildFlags({ volume: [], workspace: '/srv/app' }, io).workspace, '/srv/app');
    assert.throws(
      () => resolvePackBuildFlags({ volume: [], workspace: '/etc/app' }, io),
      /--workspace "\/etc\/app"/,
    );
    assert.throws(
      () => resolvePackBuildFlags({ volume: [`${dir}:/app/x`], workspace: '/app' }, io),
      /would cover \/app/,
    );
  });
});
