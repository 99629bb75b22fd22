import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DetectPlan } from '../cnb/build-plan.ts';
import { resolvePlan } from './plan-resolver.ts';

// Cases after the reference lifecycle's detector tests (phase/detector_test.go), re-expressed.
const el = (id: string, optional = false) => ({ id, version: 'v1', optional });
const plan = (p: Partial<DetectPlan>): DetectPlan => ({ provides: [], requires: [], or: [], ...p });
const names = (...n: string[]) => n.map((name) => ({ name }));
const quiet = { debug() {} };

describe('resolvePlan()', () => {
  test('matches provides to later requires; every provider up to a require is listed', () => {
    const r = resolvePlan(
      [
        { el: el('A'), plan: plan({ provides: names('dep1', 'dep2'), requires: names('dep2') }) },
        { el: el('C'), plan: plan({ provides: names('dep1', 'dep2') }) },
        { el: el('D'), plan: plan({ provides: names('dep2'), requires: names('dep1', 'dep2') }) },
        { el: el('B'), plan: plan({ requires: names('dep1', 'dep2') }) },
      ],
      quiet,
    )!;
    assert.deepEqual(
      r.group.map((e) => e.id),
      ['A', 'C', 'D', 'B'],
    );
    const byName = (n: string) => r.plan.find((e) => e.requires[0]!.name === n)!;
    assert.deepEqual(
      byName('dep1').providers.map((p) => p.id),
      ['A', 'C'],
    );
    assert.equal(byName('dep1').requires.length, 2);
    assert.deepEqual(
      byName('dep2').providers.map((p) => p.id),
      ['A', 'C', 'D'],
    );
    assert.equal(byName('dep2').requires.length, 3);
  });

  test('fails when a require is not provided first', () => {
    const r = resolvePlan(
      [
        { el: el('A', true), plan: plan({ provides: names('dep1') }) },
        { el: el('B'), plan: plan({ requires: names('dep1', 'dep2') }) },
        { el: el('C'), plan: plan({ provides: names('dep2') }) },
      ],
      quiet,
    );
    assert.equal(r, undefined);
  });

  test('fails when a provide is not required after', () => {
    const r = resolvePlan(
      [
        { el: el('A'), plan: plan({ requires: names('dep1') }) },
        { el: el('B'), plan: plan({ provides: names('dep1') }) },
      ],
      quiet,
    );
    assert.equal(r, undefined);
  });

  test('succeeds when the unmet requires and provides are optional', () => {
    const r = resolvePlan(
      [
        { el: el('A', true), plan: plan({ provides: names('dep1-missing') }) },
        { el: el('B'), plan: plan({ provides: names('dep2-present'), requires: names('dep2-present') }) },
        { el: el('C', true), plan: plan({ requires: names('dep3-missing') }) },
      ],
      quiet,
    )!;
    assert.deepEqual(
      r.group.map((e) => e.id),
      ['B'],
    );
    assert.deepEqual(r.plan, [
      { providers: [{ id: 'B', version: 'v1' }], requires: [{ name: 'dep2-present' }] },
    ]);
  });

  test('falls back to alternate build plans depth-first (the reference needs 16 tries)', () => {
    const lines: string[] = [];
    const r = resolvePlan(
      [
        {
          el: el('A', true),
          plan: plan({
            provides: names('dep2-missing'),
            or: [{ provides: names('dep1-present'), requires: [] }],
          }),
        },
        {
          el: el('B', true),
          plan: plan({
            requires: names('dep3-missing'),
            or: [{ provides: [], requires: names('dep1-present') }],
          }),
        },
        {
          el: el('C'),
          plan: plan({
            provides: names('dep5-missing'),
            requires: names('dep4-missing'),
            or: [{ provides: names('dep6-present'), requires: names('dep6-present') }],
          }),
        },
        {
          el: el('D', true),
          plan: plan({
            provides: names('dep8-missing'),
            requires: names('dep7-missing'),
            or: [{ provides: names('dep10-missing'), requires: names('dep9-missing') }],
          }),
        },
      ],
      { debug: (m) => lines.push(m) },
    )!;
    assert.deepEqual(
      r.group.map((e) => e.id),
      ['A', 'B', 'C'],
    );
    assert.deepEqual(r.plan, [
      { providers: [{ id: 'A', version: 'v1' }], requires: [{ name: 'dep1-present' }] },
      { providers: [{ id: 'C', version: 'v1' }], requires: [{ name: 'dep6-present' }] },
    ]);
    assert.ok(lines.includes('Resolving plan... (try #16)'));
    assert.ok(!lines.includes('Resolving plan... (try #17)'));
    assert.deepEqual(lines.slice(-2), [
      'skip: D@v1 requires dep9-missing',
      'skip: D@v1 provides unused dep10-missing',
    ]);
  });

  test('an empty result is a failure', () => {
    assert.equal(
      resolvePlan([{ el: el('A', true), plan: plan({ requires: names('x') }) }], quiet),
      undefined,
    );
  });
});
