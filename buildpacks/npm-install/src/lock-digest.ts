import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../_shared/fsutil.ts';

const PREFIX = 'sha256:';
const HEADER = PREFIX.length + 64 + 1;

/**
 * lockDigest is the sha256 (hex) of a lock file's bytes, remembered in `memoPath` (in a cache
 * layer) next to a copy of the bytes it was computed from. An unchanged lock file is recognised by
 * comparing bytes, so a rebuild that reuses node_modules never loads node:crypto, which costs
 * more at start-up than the rest of that rebuild's work. A memo that does not match (or is
 * damaged) is replaced.
 */
export async function lockDigest(memoPath: string, lock: Buffer): Promise<string> {
  const memo = await readFile(memoPath).catch(() => undefined);
  if (
    memo &&
    memo.length === HEADER + lock.length &&
    memo.toString('latin1', 0, PREFIX.length) === PREFIX &&
    memo[HEADER - 1] === 0x0a &&
    memo.subarray(HEADER).equals(lock)
  ) {
    const hex = memo.toString('latin1', PREFIX.length, HEADER - 1);
    if (/^[0-9a-f]{64}$/.test(hex)) return hex;
  }
  const { createHash } = await import('node:crypto');
  const hex = createHash('sha256').update(lock).digest('hex');
  await writeFileAtomic(memoPath, Buffer.concat([Buffer.from(`${PREFIX}${hex}\n`, 'latin1'), lock]));
  return hex;
}
