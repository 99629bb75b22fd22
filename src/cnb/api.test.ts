import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exitCodeOf } from '../cli/exit-codes.ts';
import { KilnError } from '../internal/errors.ts';
import { ApiVersion, buildpackApi, platformApi } from './api.ts';
import { ExitCode } from './exit-codes.ts';

describe('ApiVersion', () => {
  test('parse() reads major.minor and a bare major', () => {
    assert.equal(ApiVersion.parse('0.12').toString(), '0.12');
    assert.equal(ApiVersion.parse('1').toString(), '1.0');
    assert.throws(() => ApiVersion.parse('0.x'), TypeError);
    assert.throws(() => ApiVersion.parse('01.2'), TypeError);
  });

  test('compare() orders numerically, not as strings', () => {
    assert.ok(ApiVersion.parse('0.10').atLeast('0.9'));
    assert.ok(ApiVersion.parse('0.9').lessThan('0.10'));
    assert.ok(ApiVersion.parse('0.12').equals('0.12'));
    assert.ok(ApiVersion.parse('1.0').atLeast('0.15'));
  });

  test('buildpackApi() rejects unsupported versions with exit 12', () => {
    assert.equal(buildpackApi('0.12', 'x').toString(), '0.12');
    assert.throws(
      () => buildpackApi('0.2', 'bp/buildpack.toml'),
      (e: unknown) =>
        e instanceof KilnError &&
        exitCodeOf(e) === ExitCode.BuildpackApiUnsupported &&
        /bp\/buildpack.toml/.test(e.message),
    );
    assert.throws(
      () => buildpackApi('0.13', 'x'),
      (e: unknown) => exitCodeOf(e) === 12,
    );
  });

  test('platformApi() rejects unsupported versions with exit 11', () => {
    assert.equal(platformApi('0.15').toString(), '0.15');
    assert.throws(
      () => platformApi('0.3'),
      (e: unknown) => exitCodeOf(e) === 11,
    );
  });
});
