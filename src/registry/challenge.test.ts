import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseChallenges } from './challenge.ts';

test('bearer challenge with a quoted scope containing commas', () => {
  const [c] = parseChallenges(
    'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
  );
  assert.equal(c!.scheme, 'bearer');
  assert.deepEqual(c!.params, {
    realm: 'https://auth.example/token',
    service: 'registry.example',
    scope: 'repository:a/b:pull,push',
  });
});

test('several challenges, spaces, escapes, token values and odd case', () => {
  const cs = parseChallenges(
    'Basic realm="Registry \\"Realm\\"" , BEARER Realm=https://x/t, error=insufficient_scope',
  );
  assert.equal(cs.length, 2);
  assert.deepEqual(cs[0], { scheme: 'basic', params: { realm: 'Registry "Realm"' } });
  assert.deepEqual(cs[1], {
    scheme: 'bearer',
    params: { realm: 'https://x/t', error: 'insufficient_scope' },
  });
});

test('garbage does not throw', () => {
  assert.deepEqual(parseChallenges(''), []);
  assert.equal(parseChallenges('Bearer realm="unterminated')[0]!.params.realm, 'unterminated');
});
