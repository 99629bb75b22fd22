import {
  chmodSync,
  closeSync,
  createReadStream,
  lstatSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { posix } from 'node:path';
import { createGunzip } from 'node:zlib';
import { readTar } from '../../../src/layers/tar-reader.ts';
import { BuildpackFailure } from '../../_shared/main.ts';

/**
 * untarGz unpacks a downloaded toolchain archive (`go/...`) into `root`, as src/debian/deb.ts does
 * for .deb data: no absolute paths, no `..`, nothing written through a symlink the archive made,
 * symlinks that stay inside, no hard links out of the tree, no devices or fifos; only the
 * permission bits are kept. Its sha256 checked out against the index, but the site is still a
 * source of input, not of trust. Entries `skip` matches (paths like `go/src/x`) are left out.
 */
export async function untarGz(
  file: string,
  root: string,
  skip: (path: string) => boolean = () => false,
): Promise<number> {
  const symlinks = new Set<string>();
  let files = 0;
  const fail = (name: string, why: string): never => {
    throw new BuildpackFailure(`kiln/go: refusing toolchain archive entry "${name}": ${why}`);
  };
  const gunzip = createGunzip();
  const input = createReadStream(file);
  input.on('error', (e) => gunzip.destroy(e));
  for await (const e of readTar(input.pipe(gunzip))) {
    const h = e.header;
    const rel = posix.normalize(h.path.replace(/^\.\/+/, '')).replace(/\/+$/, '');
    if (h.path.startsWith('/')) fail(h.path, 'absolute path');
    if (rel === '..' || rel.startsWith('../') || h.path.split('/').includes('..'))
      fail(h.path, 'path contains ..');
    if (rel === '.' || rel === '') {
      for await (const _ of e.body);
      continue;
    }
    for (let d = posix.dirname(rel); d !== '.'; d = posix.dirname(d))
      if (symlinks.has(d)) fail(h.path, 'path goes through a symlink');
    if (skip(rel)) {
      for await (const _ of e.body);
      continue;
    }
    const dest = posix.join(root, rel);
    const mode = h.mode & 0o777;
    if (h.type === 'dir') {
      mkdirSync(dest, { recursive: true });
      chmodSync(dest, mode | 0o700);
      continue;
    }
    mkdirSync(posix.dirname(dest), { recursive: true });
    if (lstatSync(dest, { throwIfNoEntry: false })) fail(h.path, 'listed twice');
    if (h.type === 'file') {
      const fd = openSync(dest, 'wx', mode | 0o600);
      try {
        for await (const c of e.body) writeSync(fd, c);
      } finally {
        closeSync(fd);
      }
      files++;
    } else if (h.type === 'symlink') {
      // Relative to the root (not "/", where normalize would swallow the excess "..").
      const target = posix.normalize(posix.join(posix.dirname(rel), h.linkname));
      if (h.linkname.startsWith('/') || target === '..' || target.startsWith('../'))
        fail(h.path, `symlink to ${h.linkname} leaves the tree`);
      symlinkSync(h.linkname, dest);
      symlinks.add(rel);
    } else {
      // Official Go archives hold files, directories and a few relative symlinks only.
      fail(h.path, `${h.type} entries are not allowed`);
    }
  }
  return files;
}
