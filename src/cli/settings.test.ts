import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveSettings } from './settings.ts';

test('defaults follow XDG under HOME', () => {
  const s = resolveSettings({}, { HOME: '/h' }, { isTTY: true });
  assert.equal(s.dataDir, '/h/.local/share/kiln');
  assert.equal(s.cacheDir, '/h/.cache/kiln');
  assert.equal(s.configDir, '/h/.config/kiln');
  assert.equal(s.dockerConfigDir, '/h/.docker');
  assert.equal(s.color, true);
  assert.equal(s.ci, false);
  assert.equal(s.sourceDateEpoch, undefined);
});

test('KILN_HOME, XDG, DOCKER_CONFIG, SOURCE_DATE_EPOCH, CI, NO_COLOR', () => {
  const k = resolveSettings({}, { HOME: '/h', KILN_HOME: '/k', DOCKER_CONFIG: '/d' });
  assert.deepEqual(
    [k.dataDir, k.cacheDir, k.configDir, k.dockerConfigDir],
    ['/k', '/k/cache', '/k/config', '/d'],
  );
  const x = resolveSettings({}, { HOME: '/h', XDG_DATA_HOME: '/xd', XDG_CACHE_HOME: '/xc' });
  assert.equal(x.dataDir, '/xd/kiln');
  assert.equal(x.cacheDir, '/xc/kiln');
  const e = resolveSettings(
    {},
    { HOME: '/h', SOURCE_DATE_EPOCH: '1700000000', CI: 'true', NO_COLOR: '1' },
    { isTTY: true },
  );
  assert.equal(e.sourceDateEpoch, 1700000000);
  assert.equal(e.ci, true);
  assert.equal(e.color, false);
  assert.throws(
    () => resolveSettings({}, { SOURCE_DATE_EPOCH: 'yesterday' }),
    /invalid SOURCE_DATE_EPOCH "yesterday"/,
  );
});

test('flags: verbose wins over quiet, --no-color, repeated --insecure-registry', () => {
  const s = resolveSettings(
    { verbose: true, quiet: true, color: false, insecureRegistry: ['a:5000', 'b', 'a:5000'] },
    { HOME: '/h', KILN_DEBUG: '' },
    { isTTY: true },
  );
  assert.equal(s.verbose, true);
  assert.equal(s.quiet, false);
  assert.equal(s.color, false);
  assert.equal(s.debug, true);
  assert.deepEqual(s.insecureRegistries, ['a:5000', 'b']);
});
