import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { MetadataProcess } from '../cnb/metadata.ts';
import { type TarEntry, tarChunks } from '../layers/tar-writer.ts';
import type { Layer } from '../oci/image.ts';
import { MediaType } from '../oci/media-types.ts';
import { bytesLayer, imageFrom } from '../oci/memory.ts';
import { checkLaunchShell, hasLaunchShell } from './launch-shell-check.ts';

type Spec = { file?: string; exe?: string; dir?: string; link?: [string, string] };

/** layer makes a gzip layer of files (0644), executables (0755), dirs and symlinks. */
async function layer(specs: readonly Spec[]): Promise<Layer> {
  const body = Buffer.from('x');
  const entries: TarEntry[] = specs.map((s) => {
    const own = { uid: 0, gid: 0 };
    if (s.dir) return { path: s.dir, type: 'dir', mode: 0o755, ...own };
    if (s.link) return { path: s.link[0], type: 'symlink', mode: 0o777, linkname: s.link[1], ...own };
    const p = (s.file ?? s.exe)!;
    return {
      path: p,
      type: 'file',
      mode: s.exe ? 0o755 : 0o644,
      size: 1,
      open: () => Readable.from([body]),
      ...own,
    };
  });
  const chunks: Buffer[] = [];
  for await (const c of tarChunks(entries)) chunks.push(c);
  const tar = Buffer.concat(chunks);
  return bytesLayer({ blob: gzipSync(tar), tar, mediaType: MediaType.OciLayerGzip });
}

const image = async (...layers: Spec[][]) =>
  imageFrom({
    config: { architecture: 'amd64', os: 'linux' },
    layers: await Promise.all(layers.map((l) => layer(l))),
  });

const usrMerged: Spec[] = [{ dir: 'usr' }, { dir: 'usr/bin' }, { link: ['bin', 'usr/bin'] }];

test('a shell is found through merged-/usr and relative links; a missing or non-executable one is not', async () => {
  assert.equal(
    await hasLaunchShell(
      await image([...usrMerged, { exe: 'usr/bin/dash' }, { link: ['usr/bin/sh', 'dash'] }]),
    ),
    true,
  );
  assert.equal(await hasLaunchShell(await image([...usrMerged, { exe: 'usr/bin/bash' }])), true);
  assert.equal(await hasLaunchShell(await image([...usrMerged, { exe: 'usr/bin/ls' }])), false);
  assert.equal(await hasLaunchShell(await image([{ dir: 'bin' }, { file: 'bin/sh' }])), false);
  // A link leaving the root is clamped to it: /bin/sh -> ../../../bin/busybox resolves in the image.
  assert.equal(
    await hasLaunchShell(
      await image([{ dir: 'bin' }, { exe: 'bin/busybox' }, { link: ['bin/sh', '../../../bin/busybox'] }]),
    ),
    true,
  );
  // A link loop is no shell.
  assert.equal(await hasLaunchShell(await image([{ dir: 'bin' }, { link: ['bin/sh', 'sh'] }])), false);
});

test('a whiteout in an upper layer removes the shell', async () => {
  const img = await image([{ dir: 'bin' }, { exe: 'bin/sh' }], [{ dir: 'bin' }, { file: 'bin/.wh.sh' }]);
  assert.equal(await hasLaunchShell(img), false);
  const opaque = await image(
    [{ dir: 'bin' }, { exe: 'bin/sh' }],
    [{ dir: 'bin' }, { file: 'bin/.wh..wh..opq' }],
  );
  assert.equal(await hasLaunchShell(opaque), false);
});

test('checkLaunchShell fails (62) only for a direct = false process on an image without a shell', async () => {
  const noShell = await image([{ dir: 'usr' }, { exe: 'usr/app' }]);
  const proc = (type: string, direct: boolean): MetadataProcess => ({
    type,
    command: ['x'],
    args: [],
    direct,
    'buildpack-id': 'acme/old',
  });
  await checkLaunchShell([proc('web', true)], noShell, 'run');
  await assert.rejects(
    checkLaunchShell([proc('web', true), proc('worker', false)], noShell, 'kiln/run'),
    (e: Error & { exitCode?: number }) => {
      assert.equal(e.exitCode, 62);
      assert.match(
        e.message,
        /^process "worker" of buildpack acme\/old has direct = false .* the run image kiln\/run does not have; build with --run-image shell/,
      );
      assert.ok(!e.message.includes('\n'));
      return true;
    },
  );
});
