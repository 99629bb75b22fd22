import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { compareVersions, parseVersion, satisfies } from './version.ts';

// Cases after dpkg's own lib/dpkg/t/t-version.c and Dpkg_Version.t tables: [a, b, sign of a-b].
const CASES: [string, string, number][] = [
  ['0', '0', 0],
  ['0', '00', 0],
  ['1.2.3', '1.2.3', 0],
  ['4.4.3-2', '4.4.3-2', 0],
  ['1:2ab:5', '1:2ab:5', 0],
  ['7:1-a:b-5', '7:1-a:b-5', 0],
  ['57:1.2.3abYZ+~-4-5', '57:1.2.3abYZ+~-4-5', 0],
  ['1.2.3', '0:1.2.3', 0],
  ['1.2.3', '1.2.3-0', 0],
  ['009', '9', 0],
  ['009ab5', '9ab5', 0],
  ['1.2.3', '1.2.3-1', -1],
  ['1.2.3', '1.2.4', -1],
  ['1.2.4', '1.2.3', 1],
  ['1.2.24', '1.2.3', 1],
  ['0.10.0', '0.8.7', 1],
  ['3.2', '2.3', 1],
  ['1.3.2a', '1.3.2', 1],
  ['0.5.0~git', '0.5.0~git2', -1],
  ['2a', '21', -1],
  ['1.2a+~bCd3', '1.2a++', -1],
  ['1.2a+~bCd3', '1.2a+~', 1],
  ['5:2', '304-2', 1],
  ['5:2', 'a1b2', 1],
  ['1:2.3', '1:2.2', 1],
  ['0:1.0', '1:0.1', -1],
  ['3:0.1', '2:9', 1],
  ['1.0~rc1', '1.0', -1],
  ['1.0~rc1', '1.0~rc2', -1],
  ['1.0~~', '1.0~~a', -1],
  ['1.0~~a', '1.0~', -1],
  ['1.0~', '1.0', -1],
  ['1.0', '1.0a', -1],
  ['2.36-9+deb12u14', '2.36-9+deb12u4', 1],
  ['3.0.22-1~deb12u2', '3.0.22-1', -1],
  ['1:1.2.13.dfsg-1', '1.2.13.dfsg-1', 1],
  ['12.2.0-14+deb12u1', '12.2.0-14', 1],
  ['1.0-1', '1.0-1.1', -1],
  ['1.0-1+b1', '1.0-1', 1],
];

describe('compareVersions()', () => {
  for (const [a, b, want] of CASES) {
    test(`${a} vs ${b} is ${want}`, () => {
      assert.equal(Math.sign(compareVersions(a, b)) || 0, want);
      assert.equal(Math.sign(compareVersions(b, a)) || 0, -want || 0);
    });
  }
  test('agrees with dpkg --compare-versions on the whole table', (t) => {
    const probe = spawnSync('dpkg', ['--version']);
    if (probe.status !== 0) {
      t.skip('dpkg not installed');
      return;
    }
    for (const [a, b] of CASES) {
      const lt = spawnSync('dpkg', ['--compare-versions', a, 'lt', b]).status === 0;
      const eq = spawnSync('dpkg', ['--compare-versions', a, 'eq', b]).status === 0;
      const dpkg = lt ? -1 : eq ? 0 : 1;
      assert.equal(Math.sign(compareVersions(a, b)), dpkg, `${a} vs ${b}`);
    }
  });
});

describe('parseVersion()', () => {
  test('splits epoch, upstream and revision at the last hyphen', () => {
    assert.deepEqual(parseVersion('2:1.0-a-3'), { epoch: 2, upstream: '1.0-a', revision: '3' });
  });
  test('rejects malformed versions', () => {
    assert.throws(() => parseVersion(''), /empty/);
    assert.throws(() => parseVersion('a:1'), /epoch/);
    assert.throws(() => parseVersion('1.0 x'), /bad character/);
    assert.throws(() => parseVersion('-1'), /empty upstream/);
  });
});

describe('satisfies()', () => {
  test('implements the five relations', () => {
    assert.ok(satisfies('2.36-9', '>=', '2.34'));
    assert.ok(!satisfies('2.36-9', '<<', '2.36-9'));
    assert.ok(satisfies('2.36-9', '<=', '2.36-9'));
    assert.ok(satisfies('2.36-9', '=', '2.36-9'));
    assert.ok(satisfies('2.37', '>>', '2.36-9'));
  });
});
