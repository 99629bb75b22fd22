// Hostile image layers: tar archives a builder, buildpackage or registry hands kiln, which
// extracts them as root (owners kept) into rootfs caches and work dirs. Archives are written
// with Python's tarfile, which (unlike kiln's writer) keeps any order and any name.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { extract } from '../../src/layers/extract.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

const MAKE = `
import io, sys, tarfile, json
spec = json.loads(sys.argv[2])
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as t:
    for e in spec:
        i = tarfile.TarInfo(e['name'])
        i.type = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'sym': tarfile.SYMTYPE,
                  'link': tarfile.LNKTYPE}[e['type']]
        i.linkname = e.get('link', '')
        i.mode = e.get('mode', 0o644)
        i.uid = e.get('uid', 0)
        i.gid = e.get('gid', 0)
        i.mtime = e.get('mtime', 0)
        data = e.get('data', '').encode()
        i.size = len(data) if e['type'] == 'file' else 0
        t.addfile(i, io.BytesIO(data) if e['type'] == 'file' else None)
`;
type Spec = { name: string; type: string; link?: string; data?: string; mode?: number; uid?: number }[];

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-hostile-layers-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** A root to extract into and a host directory `outside` (0700, root's) next to it. */
async function setting(
  spec: (outside: string) => Spec,
): Promise<{ root: string; outside: string; tar: string }> {
  const base = await fs.mkdtemp(path.join(tmp, 'case-'));
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  await fs.mkdir(root);
  await fs.mkdir(path.join(outside, 'victim'), { recursive: true });
  await fs.chmod(path.join(outside, 'victim'), 0o700);
  await fs.writeFile(path.join(outside, 'secret'), 'S', { mode: 0o600 });
  const tar = path.join(base, 'layer.tar');
  execFileSync('python3', ['-c', MAKE, tar, JSON.stringify(spec(outside))]);
  return { root, outside, tar };
}

describe('hostile layers', () => {
  test('a directory whose parent a later entry turns into a link to a host directory: mode, owner and time stay on the host directory', async () => {
    const { root, outside, tar } = await setting((outside) => [
      { name: 'a/', type: 'dir', mode: 0o755 },
      { name: 'a/victim/', type: 'dir', mode: 0o7777, uid: 4321 },
      { name: 'a', type: 'sym', link: outside },
    ]);
    const before = await fs.stat(path.join(outside, 'victim'));
    await extract(createReadStream(tar), root, { owners: asRoot });
    const st = await fs.stat(path.join(outside, 'victim'));
    assert.equal((st.mode & 0o7777).toString(8), '700', 'the host directory kept its mode');
    assert.equal(st.uid, before.uid, 'the host directory kept its owner');
    assert.equal(st.mtimeMs, before.mtimeMs, 'the host directory kept its mtime');
    assert.equal(await fs.readlink(path.join(root, 'a')), outside);
  });

  test('the same through a relative link and a deeper chain', async () => {
    const { root, outside, tar } = await setting(() => [
      { name: 'x/y/victim/', type: 'dir', mode: 0o777 },
      { name: 'x/y', type: 'sym', link: '../../outside' },
    ]);
    await extract(createReadStream(tar), root);
    assert.equal(((await fs.stat(path.join(outside, 'victim'))).mode & 0o7777).toString(8), '700');
  });

  test('whiteouts and opaque markers under a link to a host directory act inside the root', async () => {
    const { root, outside, tar } = await setting((outside) => [
      { name: 'l', type: 'sym', link: outside },
      { name: 'l/.wh.secret', type: 'file' },
      { name: 'l/.wh..wh..opq', type: 'file' },
    ]);
    await extract(createReadStream(tar), root, { whiteouts: true });
    assert.deepEqual((await fs.readdir(outside)).sort(), ['secret', 'victim']);
  });

  test('a hard link to a link to a host file, then a file written at its name, leaves the host file alone', async () => {
    const { root, outside, tar } = await setting((outside) => [
      { name: 'l', type: 'sym', link: path.join(outside, 'secret') },
      { name: 'h', type: 'link', link: 'l' },
      { name: 'h', type: 'file', data: 'PWNED' },
      { name: 'l', type: 'file', data: 'PWNED' },
    ]);
    await extract(createReadStream(tar), root);
    assert.equal(await fs.readFile(path.join(outside, 'secret'), 'utf8'), 'S');
    assert.equal(await fs.readFile(path.join(root, 'h'), 'utf8'), 'PWNED');
  });

  test('a hard link to a file of a later entry is refused, naming the entry', async () => {
    const { root, tar } = await setting(() => [
      { name: 'h', type: 'link', link: 'later' },
      { name: 'later', type: 'file', data: 'x' },
    ]);
    await assert.rejects(
      extract(createReadStream(tar), root),
      /^UnsafeTarError: refusing tar entry "h": hard link target "later" does not exist$/,
    );
  });
});
