import assert from 'node:assert/strict';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { test } from 'node:test';
import { youngGcPacer } from './young-gc.ts';

// Counts the young-generation collections V8 reports while `fn` runs.
async function minorGcsDuring(fn: () => void): Promise<number> {
  let n = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if ((e.detail as { kind?: number } | undefined)?.kind === constants.NODE_PERFORMANCE_GC_MINOR) n++;
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    fn();
    // Entries are delivered after the collection, from the event loop.
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    obs.disconnect();
  }
  return n;
}

test('the pacer collects the young generation once per budget of bytes, not before', async () => {
  const pace = youngGcPacer(1 << 20);
  assert.equal(await minorGcsDuring(() => pace(512 * 1024)), 0, 'half the budget: no collection');
  assert.equal(await minorGcsDuring(() => pace(600 * 1024)), 1, 'budget reached: one collection');
  assert.equal(await minorGcsDuring(() => pace(900 * 1024)), 0, 'the count starts again');
  assert.equal(await minorGcsDuring(() => pace(200 * 1024)), 1);
});

test('the main context gets no gc global from it', () => {
  youngGcPacer(1)(1);
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
});
