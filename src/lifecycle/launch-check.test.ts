// The launch check's loader rules, in process, on a synthetic run image (layers with links and a
// whiteout) and launch layers on disk holding ELF files written by test/helpers/elf-writer.ts:
// default dirs through links, ld.so.conf only with a loader cache, whiteouts, RPATH inherited by
// libraries and RUNPATH not, `$ORIGIN`, `#!/usr/bin/env`, links that point at the host, hard
// links, and the cache (a pass is remembered; another run image checks again).

import assert from 'node:assert/strict';
import { chmod, link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeElf } from '../../test/helpers/elf-writer.ts';
import { fileEntry } from '../../test/helpers/tar-entries.ts';
import { exitCodeOf } from '../cli/exit-codes.ts';
import type { LifecycleMetadata } from '../cnb/lifecycle-metadata.ts';
import type { MetadataProcess } from '../cnb/metadata.ts';
import { KilnError } from '../internal/errors.ts';
import { discardLogger } from '../internal/log.ts';
import { type TarEntry, tarChunks } from '../layers/tar-writer.ts';
import { walk } from '../layers/walk.ts';
import { sha256 } from '../oci/digest.ts';
import type { Image } from '../oci/image.ts';
import { bytesLayer, imageFrom } from '../oci/memory.ts';
import { LaunchCheckCache } from './launch-cache.ts';
import { checkLaunch } from './launch-check.ts';

const LD = '/lib64/ld-linux-x86-64.so.2';
const ELF = (o: Partial<Parameters<typeof makeElf>[0]> = {}) =>
  makeElf({ bits: 64, little: true, machine: 62, interp: LD, needed: ['libc.so.6'], ...o });
const LIB = (o: Partial<Parameters<typeof makeElf>[0]> = {}) =>
  makeElf({ bits: 64, little: true, machine: 62, type: 3, needed: ['libc.so.6'], ...o });

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-launch-check-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const symlinkEntry = (p: string, linkname: string): TarEntry => ({
  path: p,
  type: 'symlink',
  mode: 0o777,
  uid: 0,
  gid: 0,
  linkname,
});

async function layerOf(entries: TarEntry[]) {
  const chunks: Buffer[] = [];
  for await (const c of tarChunks(entries)) chunks.push(c);
  const tar = Buffer.concat(chunks);
  return bytesLayer({ blob: tar, tar, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
}

/** A merged-/usr run image: glibc's loader and libc, ld.so.conf naming /opt/conflib, a whiteout. */
async function runImage(o: { ldCache?: boolean; env?: boolean; extra?: string } = {}): Promise<Image> {
  const base = await layerOf([
    symlinkEntry('lib', 'usr/lib'),
    symlinkEntry('lib64', 'usr/lib64'),
    symlinkEntry('bin', 'usr/bin'),
    fileEntry('usr/lib64/ld-linux-x86-64.so.2', LIB({ needed: [] }), 0o755),
    fileEntry('usr/lib/x86_64-linux-gnu/libc.so.6', LIB({ needed: [] })),
    fileEntry('usr/lib/x86_64-linux-gnu/libgone.so.1', LIB()),
    fileEntry('opt/conflib/libconf.so.1', LIB()),
    fileEntry('etc/ld.so.conf', 'include /etc/ld.so.conf.d/*.conf\n'),
    fileEntry('etc/ld.so.conf.d/conf.conf', '# comment\n/opt/conflib\n'),
    ...(o.ldCache ? [fileEntry('etc/ld.so.cache', 'x')] : []),
    ...(o.env ? [fileEntry('usr/bin/env', ELF(), 0o755)] : []),
    ...(o.extra ? [fileEntry(`etc/${o.extra}`, 'x')] : []),
  ]);
  const top = await layerOf([fileEntry('usr/lib/x86_64-linux-gnu/.wh.libgone.so.1', '')]);
  return imageFrom({
    config: { architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/bin:/bin'] } },
    layers: [base, top],
  });
}

interface Fixture {
  /** Files of the launch layer `test/bp:tool` (path → content, mode). */
  readonly files: Record<string, readonly [string | Buffer, number]>;
  readonly links?: Record<string, string>;
  readonly hardLinks?: Record<string, string>;
  readonly command: readonly string[];
  readonly direct?: boolean;
  /** The layer as the previous image's (a tar, no directory to walk at export). */
  readonly fromTar?: boolean;
}

let n = 0;
/** check runs checkLaunch over a fresh layers dir made from `f`; resolves, or rejects with the miss. */
async function check(f: Fixture, image: Image, cache = new LaunchCheckCache()): Promise<void> {
  const dir = path.join(tmp, `case-${++n}`);
  const layersDir = path.join(dir, 'layers');
  const appDir = path.join(dir, 'app');
  const layer = path.join(layersDir, 'test_bp', 'tool');
  await mkdir(appDir, { recursive: true });
  await mkdir(layer, { recursive: true });
  for (const [p, [body, mode]] of Object.entries(f.files)) {
    await mkdir(path.dirname(path.join(layer, p)), { recursive: true });
    await writeFile(path.join(layer, p), body);
    await chmod(path.join(layer, p), mode);
  }
  for (const [p, target] of Object.entries(f.links ?? {})) {
    await mkdir(path.dirname(path.join(layer, p)), { recursive: true });
    await symlink(target, path.join(layer, p));
  }
  for (const [p, target] of Object.entries(f.hardLinks ?? {}))
    await link(path.join(layer, target), path.join(layer, p));
  const entries = await walk(layer, { prefix: 'layers/test_bp/tool' });
  const tarLayer = await layerOf(entries);
  const metadata = {
    app: [],
    config: { sha: sha256(JSON.stringify(f)) },
    buildpacks: [{ key: 'test/bp', version: '1', layers: { tool: { sha: sha256(`${n}`), launch: true } } }],
  } as unknown as LifecycleMetadata;
  const process: MetadataProcess = {
    type: 'web',
    command: [...f.command],
    args: [],
    direct: f.direct ?? true,
    'buildpack-id': 'test/bp',
  };
  await checkLaunch({
    layersDir,
    appDir,
    buildpacks: [{ id: 'test/bp', api: '0.10' }],
    metadata,
    contents: f.fromTar ? new Map() : new Map([[layer, { entries: async () => entries, fingerprint: '' }]]),
    previousLayer: (d) => (f.fromTar && d === sha256(`${n}`) ? tarLayer : undefined),
    processes: async () => [process],
    imageEnv: ['PATH=/cnb/process:/cnb/lifecycle:/usr/bin:/bin'],
    runImage: { image, name: 'test/run' },
    cache,
    log: discardLogger,
  });
}

/** missOf is the message a failing check gave. */
async function missOf(f: Fixture, image: Image): Promise<string> {
  try {
    await check(f, image);
  } catch (e) {
    assert.ok(e instanceof KilnError, String(e));
    assert.equal(exitCodeOf(e), 62);
    assert.doesNotMatch(e.message, /\n/);
    return e.message;
  }
  assert.fail('the check passed');
}

const TOOL = '/layers/test_bp/tool/bin/tool';

describe('launch check loader rules', () => {
  test('libc through the /lib link and the default dirs; the interpreter through /lib64', async () => {
    await check({ files: { 'bin/tool': [ELF(), 0o755] }, command: ['tool'] }, await runImage());
  });

  test('a missing interpreter is named', async () => {
    const m = await missOf(
      { files: { 'bin/tool': [ELF({ interp: '/lib/ld-musl-x86_64.so.1' }), 0o755] }, command: ['tool'] },
      await runImage(),
    );
    assert.equal(
      m,
      `process "web": ${TOOL} needs /lib/ld-musl-x86_64.so.1, which the run image test/run lacks`,
    );
  });

  test('ld.so.conf dirs count only when the image has a loader cache', async () => {
    const f = {
      files: { 'bin/tool': [ELF({ needed: ['libconf.so.1', 'libc.so.6'] }), 0o755] as const },
      command: ['tool'],
    };
    assert.equal(
      await missOf(f, await runImage()),
      `process "web": ${TOOL} needs libconf.so.1, which the run image test/run lacks`,
    );
    await check(f, await runImage({ ldCache: true }));
  });

  test('a library an upper layer whited out is missing', async () => {
    const m = await missOf(
      { files: { 'bin/tool': [ELF({ needed: ['libgone.so.1'] }), 0o755] }, command: ['tool'] },
      await runImage(),
    );
    assert.match(m, /needs libgone\.so\.1, which the run image test\/run lacks/);
  });

  test('RPATH $ORIGIN is inherited by the libraries it loads; RUNPATH is not (as glibc does)', async () => {
    const files = (exe: Buffer) => ({
      'bin/tool': [exe, 0o755] as const,
      'private/liba.so.1': [LIB({ needed: ['libb.so.1', 'libc.so.6'] }), 0o644] as const,
      'private/libb.so.1': [LIB(), 0o644] as const,
    });
    await check(
      { files: files(ELF({ needed: ['liba.so.1'], rpath: '$ORIGIN/../private' })), command: ['tool'] },
      await runImage(),
    );
    const m = await missOf(
      { files: files(ELF({ needed: ['liba.so.1'], runpath: '$ORIGIN/../private' })), command: ['tool'] },
      await runImage(),
    );
    assert.equal(
      m,
      'process "web": /layers/test_bp/tool/private/liba.so.1 needs libb.so.1, which the run image test/run lacks',
    );
  });

  test('a library of another class does not satisfy the loader', async () => {
    const m = await missOf(
      {
        files: {
          'bin/tool': [ELF({ needed: ['liba.so.1'], runpath: '$ORIGIN/../lib32' }), 0o755],
          'lib32/liba.so.1': [makeElf({ bits: 32, little: true, machine: 3, type: 3 }), 0o644],
        },
        command: ['tool'],
      },
      await runImage(),
    );
    assert.match(m, /needs liba\.so\.1/);
  });

  test('a link out of the layer resolves inside the image, never on the host', async () => {
    const host = path.join(tmp, 'host-only-tool');
    await writeFile(host, ELF(), { mode: 0o755 });
    const m = await missOf({ files: {}, links: { 'bin/tool': host }, command: ['tool'] }, await runImage());
    assert.match(m, /^process "web": executable "tool" is on no directory of the launch PATH/);
  });

  test('a hard-linked library is found under both names', async () => {
    await check(
      {
        files: {
          'bin/tool': [ELF({ needed: ['liba.so.1'], runpath: '$ORIGIN/../lib' }), 0o755],
          'lib/liba.so.1.0': [LIB(), 0o644],
        },
        hardLinks: { 'lib/liba.so.1': 'lib/liba.so.1.0' },
        command: ['tool'],
      },
      await runImage(),
    );
  });

  test('#!/usr/bin/env finds its target on the launch PATH (layer bin dirs first); env itself must exist', async () => {
    const f = {
      files: {
        'bin/run.js': ['#!/usr/bin/env node\nconsole.log(1)\n', 0o755] as const,
        'bin/node': [ELF(), 0o755] as const,
      },
      command: ['run.js'],
    };
    assert.equal(
      await missOf(f, await runImage()),
      'process "web": /layers/test_bp/tool/bin/run.js needs /usr/bin/env, which the shell-free run image lacks',
    );
    await check(f, await runImage({ env: true }));
    const noNode = { ...f, files: { 'bin/run.js': f.files['bin/run.js'] } };
    assert.match(
      await missOf(noNode, await runImage({ env: true })),
      /run\.js needs "node" \(through \/usr\/bin\/env\) on the launch PATH \(\/layers\/test_bp\/tool\/bin:/,
    );
  });

  test('an exec.d script needs its interpreter too', async () => {
    const m = await missOf(
      {
        files: { 'bin/tool': [ELF(), 0o755], 'exec.d/setup': ['#!/bin/bash\necho x\n', 0o755] },
        command: ['tool'],
      },
      await runImage(),
    );
    assert.equal(
      m,
      'launch layer test/bp:tool (exec.d): /layers/test_bp/tool/exec.d/setup needs /bin/bash, which the shell-free run image lacks',
    );
  });

  test('a launch layer kept from the previous image is scanned from its tar', async () => {
    const files = { 'bin/tool': [ELF({ needed: ['liba.so.1'] }), 0o755] as const };
    assert.match(
      await missOf({ files, command: ['tool'], fromTar: true }, await runImage()),
      /tool needs liba\.so\.1/,
    );
    await check(
      { files: { ...files, 'lib/liba.so.1': [LIB(), 0o644] }, command: ['tool'], fromTar: true },
      await runImage(),
    );
  });

  test('direct = false needs /bin/sh', async () => {
    const m = await missOf({ files: {}, command: ['echo hi'], direct: false }, await runImage());
    assert.equal(
      m,
      'process "web": its command (direct = false: run through a shell) needs /bin/sh, which the shell-free run image lacks',
    );
  });

  test('ELF files of a launch layer no process runs are checked too; foreign-machine ones are not', async () => {
    const m = await missOf(
      {
        files: {
          'bin/tool': [ELF(), 0o755],
          'lib/libextra.so': [LIB({ needed: ['libnothere.so.2'] }), 0o644],
          'lib/arm64.so': [LIB({ machine: 183, needed: ['libnothere.so.3'] }), 0o644],
        },
        command: ['tool'],
      },
      await runImage(),
    );
    assert.equal(
      m,
      'launch layer test/bp:tool: /layers/test_bp/tool/lib/libextra.so needs libnothere.so.2, which the run image test/run lacks',
    );
  });

  test('a pass is remembered by digests; another run image is checked again', async () => {
    const cache = new LaunchCheckCache(path.join(tmp, 'cache'));
    const f: Fixture = {
      files: { 'bin/tool': [ELF({ needed: ['libconf.so.1'] }), 0o755] },
      command: ['tool'],
    };
    const withCache = await runImage({ ldCache: true });
    await check(f, withCache, cache);
    // The same fixture and run image: the remembered pass, though the layer dir is new.
    n--;
    await check(f, withCache, cache);
    n--;
    await assert.rejects(check(f, await runImage({ extra: 'other' }), cache), /needs libconf\.so\.1/);
  });
});
