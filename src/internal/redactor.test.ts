import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redactor, redactPatterns } from './redactor.ts';

test('redact removes registered secrets and credential patterns', () => {
  const r = new Redactor();
  r.add('hunter2-secret');
  const out = r.redact(
    'failed with hunter2-secret; Authorization: Bearer abcdefghijklmnop; https://u:pw@host/x?access_token=zzz&b=1 {"auth":"dXNlcjpwdw=="}',
  );
  assert.ok(!out.includes('hunter2-secret'));
  assert.ok(!out.includes('abcdefghijklmnop'));
  assert.ok(!out.includes('u:pw@'));
  assert.ok(!out.includes('zzz'));
  assert.ok(!out.includes('dXNlcjpwdw=='));
  assert.match(out, /&b=1/);
});

test('ordinary messages are left alone', () => {
  assert.equal(new Redactor().redact('registry auth: 401 unauthorized'), 'registry auth: 401 unauthorized');
  assert.equal(redactPatterns('registry auth: 401 unauthorized'), 'registry auth: 401 unauthorized');
});

test('each instance redacts only what it was given: no process-wide set', () => {
  const a = new Redactor();
  const b = new Redactor();
  a.add('only-for-run-a');
  assert.equal(a.redact('x only-for-run-a'), 'x [REDACTED]');
  assert.equal(b.redact('x only-for-run-a'), 'x only-for-run-a');
  // Patterns need no registration.
  assert.equal(redactPatterns('Authorization: Bearer abcdefghijklmnop'), 'Authorization: Bearer [REDACTED]');
});
