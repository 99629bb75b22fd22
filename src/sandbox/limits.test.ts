import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exitCodeOf } from '../cli/exit-codes.ts';
import { KilnError } from '../internal/errors.ts';
import { formatBytes, formatDuration, parseDuration, parseSize } from './limits.ts';

describe('limits: sizes and durations as users write them', () => {
  test('parseSize reads binary units, case-insensitive, and plain bytes', () => {
    assert.equal(parseSize('64MiB', 'x'), 64 << 20);
    assert.equal(parseSize('4g', 'x'), 4 * 2 ** 30);
    assert.equal(parseSize('10GB', 'x'), 10 * 2 ** 30);
    assert.equal(parseSize('1.5GiB', 'x'), 1.5 * 2 ** 30);
    assert.equal(parseSize('512k', 'x'), 512 * 1024);
    assert.equal(parseSize('4096', 'x'), 4096);
  });

  test('parseSize refuses what is not a positive size, naming the flag (exit 3)', () => {
    for (const bad of ['', 'lots', '-1G', '0', '5 parsecs', '1e9']) {
      assert.throws(
        () => parseSize(bad, '--disk-budget'),
        (e: unknown) =>
          e instanceof KilnError && exitCodeOf(e) === 3 && e.message.startsWith('--disk-budget "'),
      );
    }
  });

  test('parseDuration reads s/m/h/ms and combinations; 0/none/off mean no limit', () => {
    assert.equal(parseDuration('90s', 'x'), 90_000);
    assert.equal(parseDuration('30m', 'x'), 1_800_000);
    assert.equal(parseDuration('1h', 'x'), 3_600_000);
    assert.equal(parseDuration('1h30m', 'x'), 5_400_000);
    assert.equal(parseDuration('500ms', 'x'), 500);
    assert.equal(parseDuration('45', 'x'), 45_000);
    for (const off of ['0', 'none', 'off', 'NONE']) assert.equal(parseDuration(off, 'x'), undefined);
    for (const bad of ['', 'soon', '10 minutes', '1d', 'h1', '30m garbage', '-5s'])
      assert.throws(
        () => parseDuration(bad, '--timeout'),
        (e: unknown) =>
          e instanceof KilnError &&
          exitCodeOf(e) === 3 &&
          /^--timeout ".*" is not a duration/.test(e.message),
      );
  });

  test('formatDuration and formatBytes write what the user would have typed', () => {
    assert.equal(formatDuration(30_000), '30s');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(1_800_000), '30m');
    assert.equal(formatDuration(3_600_000), '1h');
    assert.equal(formatDuration(1500), '1.5s');
    assert.equal(formatBytes(64 << 20), '64 MiB');
    assert.equal(formatBytes(10 * 2 ** 30), '10 GiB');
  });
});
