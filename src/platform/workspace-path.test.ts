import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../internal/errors.ts';
import { checkWorkspace } from './workspace-path.ts';

describe('--workspace', () => {
  test('absolute, normalised places outside the reserved trees are taken as given', () => {
    for (const ok of ['/workspace', '/app', '/srv/app', '/home/app', '/opt/my-app', '/var/www/site', '/data'])
      assert.equal(checkWorkspace(ok), ok);
  });

  for (const [bad, why] of [
    ['app', /expected an absolute path/],
    ['', /expected an absolute path/],
    ['/', /holds more than the app/],
    ['/srv/app/', /normalised/],
    ['/srv//app', /normalised/],
    ['/srv/./app', /normalised/],
    ['/srv/../etc/app', /normalised/],
    ['/srv/a\npp', /control characters/],
    [`/${'a'.repeat(300)}`, /longer than 255/],
    ['/home', /holds more than the app/],
    ['/var', /holds more than the app/],
    ['/cnb', /may not be placed in \/cnb/],
    ['/cnb/app', /may not be placed in \/cnb/],
    ['/layers/app', /may not be placed in \/layers/],
    ['/platform', /may not be placed in \/platform/],
    ['/proc/1', /may not be placed in \/proc/],
    ['/sys/app', /may not be placed in \/sys/],
    ['/dev/app', /may not be placed in \/dev/],
    ['/etc/app', /may not be placed in \/etc/],
    ['/usr/local/app', /may not be placed in \/usr/],
    ['/tmp/app', /may not be placed in \/tmp/],
    ['/var/lib/app', /may not be placed in \/var\/lib/],
    ['/lib64', /may not be placed in \/lib64/],
  ] as const) {
    test(`${JSON.stringify(bad)} is refused in one line`, () => {
      assert.throws(
        () => checkWorkspace(bad),
        (e: unknown) =>
          e instanceof UsageError && why.test(e.message) && !e.message.replace(bad, '').includes('\n'),
      );
    });
  }
});
