import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalName, field, formatParagraph, parseDeb822 } from './deb822.ts';

describe('parseDeb822()', () => {
  test('splits paragraphs, folds continuation lines and reads fields case-insensitively', () => {
    const ps = parseDeb822(
      'Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\n# comment\nPackage: b\r\nDepends: x,\n y\n',
    );
    assert.equal(ps.length, 2);
    assert.equal(field(ps[0]!, 'package'), 'a');
    assert.equal(field(ps[0]!, 'DESCRIPTION'), 'short\nlong line\n\nmore');
    assert.equal(field(ps[1]!, 'Depends'), 'x,\ny');
  });
  test('rejects a continuation line without a field and a line without a colon', () => {
    assert.throws(() => parseDeb822(' orphan\n'), /line 1: continuation line without a field/);
    assert.throws(() => parseDeb822('Package: a\nnot a field\n'), /line 2: expected "Field: value"/);
  });
  test('round-trips through formatParagraph', () => {
    const text = 'Package: a\nDescription: x\n y\n .\n z\n';
    const p = parseDeb822(text)[0]!;
    assert.equal(formatParagraph([...p].map(([k, v]) => [canonicalName(k), v] as const)), text);
  });
  test('canonicalName restores the usual capitalisation', () => {
    assert.equal(canonicalName('pre-depends'), 'Pre-Depends');
    assert.equal(canonicalName('x-custom-thing'), 'X-Custom-Thing');
  });
});
