import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mapBounded, Semaphore } from '../internal/bounded.ts';
import { isTransient, RetryableStatus, retryAfter, withRetry } from '../internal/http/retry.ts';
import { RegistryError } from './errors.ts';

const FAST = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };

test('withRetry retries transient failures and gives up after the bound', async () => {
  let n = 0;
  const v = await withRetry(async () => {
    if (++n < 3) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    return 'ok';
  }, FAST);
  assert.equal(v, 'ok');
  assert.equal(n, 3);

  let m = 0;
  await assert.rejects(
    withRetry(async () => {
      m++;
      throw new RetryableStatus(503, undefined, async () => new RegistryError('get x', 503, []));
    }, FAST),
    (e: Error) => e instanceof RegistryError && e.message === 'get x: 503 server error',
  );
  assert.equal(m, 3);
});

test('permanent failures are not retried; exhausted errors are not retried again by an outer loop', async () => {
  let n = 0;
  await assert.rejects(
    withRetry(async () => {
      n++;
      throw new RegistryError('get x', 404, [{ code: 'MANIFEST_UNKNOWN', message: '' }]);
    }, FAST),
  );
  assert.equal(n, 1);
  let outer = 0;
  await assert.rejects(
    withRetry(async () => {
      outer++;
      return withRetry(async () => {
        throw new RetryableStatus(500, undefined, async () => new RegistryError('x', 500, []));
      }, FAST);
    }, FAST),
  );
  assert.equal(outer, 1);
});

test('transient classification and Retry-After', () => {
  assert.ok(
    isTransient(
      new TypeError('fetch failed', { cause: Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' }) }),
    ),
  );
  assert.ok(isTransient(new RegistryError('x', 429, [])));
  assert.ok(!isTransient(new RegistryError('x', 401, [])));
  assert.ok(!isTransient(new Error('boom')));
  assert.equal(retryAfter('3'), 3000);
  assert.equal(retryAfter(null), undefined);
});

test('Semaphore and mapBounded keep at most N tasks in flight, results in order', async () => {
  let running = 0;
  let peak = 0;
  const sem = new Semaphore(2);
  await Promise.all(
    [1, 2, 3, 4, 5].map((i) =>
      sem.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5 * i));
        running--;
      }),
    ),
  );
  assert.equal(peak, 2);
  peak = 0;
  const out = await mapBounded([30, 10, 20, 5], 3, async (ms, i) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, ms));
    running--;
    return i * 10;
  });
  assert.deepEqual(out, [0, 10, 20, 30]);
  assert.equal(peak, 3);
  await assert.rejects(
    mapBounded([1, 2, 3], 2, async (x) => {
      if (x === 2) throw new Error('two');
      return x;
    }),
    /two/,
  );
});
