import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { emptyConfig } from '../config/config-file.ts';
import { KilnError } from '../internal/errors.ts';
import { resolveBuildLimits } from './build-limits.ts';
import { exitCodeOf } from './exit-codes.ts';

const GiB = 2 ** 30;
const onTerminal = { ci: false, tty: true };

describe('resolveBuildLimits: flag > config > default', () => {
  test('defaults: 10 GiB disk budget, 4 GiB per file, 4 GiB memory, 2 GiB reserve', () => {
    const { limits, timeoutMs } = resolveBuildLimits({}, emptyConfig(), onTerminal);
    assert.equal(limits.diskBytes, 10 * GiB);
    assert.equal(limits.fileSizeBytes, 4 * GiB);
    assert.equal(limits.memoryBytes, 4 * GiB);
    assert.equal(limits.diskReserveBytes, 2 * GiB);
    assert.equal(limits.processes, 4096);
    assert.equal(timeoutMs, undefined, 'no timeout for someone watching on a terminal');
  });

  test('the timeout defaults to 1h when nobody watches (CI, or output not a terminal)', () => {
    assert.equal(resolveBuildLimits({}, emptyConfig(), { ci: true, tty: true }).timeoutMs, 3_600_000);
    assert.equal(resolveBuildLimits({}, emptyConfig(), { ci: false, tty: false }).timeoutMs, 3_600_000);
    assert.equal(
      resolveBuildLimits({ timeout: 'none' }, emptyConfig(), { ci: true, tty: false }).timeoutMs,
      undefined,
    );
  });

  test('the config file sets limits, flags win over it', () => {
    const config = {
      ...emptyConfig(),
      diskBudget: '20GiB',
      memoryLimit: '6g',
      processLimit: 100,
      timeout: '45m',
      fileSizeLimit: '1GiB',
      diskReserve: '5GiB',
    };
    const fromConfig = resolveBuildLimits({}, config, onTerminal);
    assert.equal(fromConfig.limits.diskBytes, 20 * GiB);
    assert.equal(fromConfig.limits.memoryBytes, 6 * GiB);
    assert.equal(fromConfig.limits.processes, 100);
    assert.equal(fromConfig.limits.fileSizeBytes, GiB);
    assert.equal(fromConfig.limits.diskReserveBytes, 5 * GiB);
    assert.equal(fromConfig.timeoutMs, 45 * 60_000);
    const fromFlags = resolveBuildLimits(
      { diskBudget: '64MiB', memoryLimit: '1g', processLimit: '50', timeout: '90s' },
      config,
      onTerminal,
    );
    assert.equal(fromFlags.limits.diskBytes, 64 << 20);
    assert.equal(fromFlags.limits.memoryBytes, GiB);
    assert.equal(fromFlags.limits.processes, 50);
    assert.equal(fromFlags.timeoutMs, 90_000);
  });

  test('bad values are invalid arguments naming the flag', () => {
    for (const [flags, name] of [
      [{ timeout: 'forever' }, '--timeout'],
      [{ memoryLimit: 'big' }, '--memory-limit'],
      [{ processLimit: '-3' }, '--process-limit'],
      [{ diskBudget: '0' }, '--disk-budget'],
    ] as const)
      assert.throws(
        () => resolveBuildLimits(flags, emptyConfig(), onTerminal),
        (e: unknown) => e instanceof KilnError && exitCodeOf(e) === 3 && e.message.startsWith(name),
      );
  });
});

test('a limit in the config file that does not parse is refused when the file is read, naming the key', async () => {
  const { parseConfig } = await import('../config/config-file.ts');
  assert.throws(
    () => parseConfig('memory-limit = "plenty"\n', '/etc/kiln.toml'),
    (e: unknown) =>
      e instanceof KilnError && exitCodeOf(e) === 3 && /kiln\.toml.*memory-limit/.test(e.message),
  );
  assert.equal(parseConfig('timeout = "30m"\ndisk-budget = "20GiB"\n', 'f').diskBudget, '20GiB');
});
