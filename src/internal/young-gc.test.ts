import assert from 'node:assert/strict';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { test } from 'node:test';
import { youngGcPacer } from './young-gc.ts';

// Counts the young-generation collections V8 reports while `fn` runs.
async function minorGcsDuring(fn: () => void): Promise<number> {
  let n = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (
        (e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR
      )
        n++;
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

// Counts are compared with wide margins: the test runner itself may cause a collection or two.
test('the pacer collects the young generation once per budget of bytes, not before', async () => {
  const budget = 1 << 20;
  const pace = youngGcPacer(budget);
  const under = await minorGcsDuring(() => {
    for (let i = 0; i < 1000; i++) pace((budget - 1) / 1000);
  });
  assert.ok(under < 5, `1000 calls within one budget: ${under} collections`);
  const over = await minorGcsDuring(() => {
    for (let i = 0; i < 20 * 16; i++) pace(budget / 16);
  });
  assert.ok(over >= 20 && over < 30, `20 budgets: ${over} collections`);
});

test('the main context gets no gc global from it', () => {
  youngGcPacer(1)(1);
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
});
