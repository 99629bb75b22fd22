import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addSecret, redact } from './redact.ts';

test('redact removes registered secrets and credential patterns', () => {
  addSecret('hunter2-secret');
  const out = redact(
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
  assert.equal(redact('registry auth: 401 unauthorized'), 'registry auth: 401 unauthorized');
});
