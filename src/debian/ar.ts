import { open } from 'node:fs/promises';
import { KilnError } from '../internal/errors.ts';

/** ArMember is one member of an `ar` archive: its name and where its bytes sit in the file. */
export interface ArMember {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

const MAGIC = '!<arch>\n';

/**
 * readArIndex lists the members of the ar archive at `path` (the container format of .deb files,
 * deb(5)): an 8-byte magic, then 60-byte headers each followed by the member padded to even size.
 */
export async function readArIndex(path: string): Promise<ArMember[]> {
  const fh = await open(path, 'r');
  try {
    const { size: total } = await fh.stat();
    const head = Buffer.alloc(60);
    await fh.read(head, 0, 8, 0);
    if (head.subarray(0, 8).toString('latin1') !== MAGIC)
      throw new KilnError(`${path}: not an ar archive (bad magic)`);
    const out: ArMember[] = [];
    let pos = 8;
    while (pos < total) {
      const { bytesRead } = await fh.read(head, 0, 60, pos);
      if (bytesRead < 60) throw new KilnError(`${path}: truncated ar header at offset ${pos}`);
      if (head[58] !== 0x60 || head[59] !== 0x0a)
        throw new KilnError(`${path}: bad ar header at offset ${pos}`);
      let name = head.subarray(0, 16).toString('latin1').trimEnd();
      // GNU ar terminates names with "/"; .deb members never use the long-name table.
      if (name.endsWith('/')) name = name.slice(0, -1);
      const size = Number(head.subarray(48, 58).toString('latin1').trim());
      if (!Number.isSafeInteger(size) || size < 0)
        throw new KilnError(`${path}: bad ar member size for ${JSON.stringify(name)}`);
      const offset = pos + 60;
      if (offset + size > total)
        throw new KilnError(`${path}: ar member ${JSON.stringify(name)} runs past the end of the file`);
      out.push({ name, offset, size });
      pos = offset + size + (size % 2);
    }
    return out;
  } finally {
    await fh.close();
  }
}
