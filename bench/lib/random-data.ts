import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * randomStream yields `size` bytes of incompressible data in 1 MiB chunks, generated as read, so
 * benches can write large layers without holding them in memory.
 */
export function randomStream(size: number): Readable {
  return Readable.from(
    (function* () {
      for (let left = size; left > 0; left -= 1 << 20) yield randomBytes(Math.min(left, 1 << 20));
    })(),
  );
}
