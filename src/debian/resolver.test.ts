import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KilnError } from '../internal/errors.ts';
import type { PackageRecord } from './package.ts';
import { parseRelations } from './package.ts';
import { resolve, Universe } from './resolver.ts';

function pkg(name: string, version: string, fields: Partial<PackageRecord> = {}): PackageRecord {
  return {
    name,
    version,
    arch: 'amd64',
    multiArch: 'no',
    essential: false,
    priority: 'optional',
    source: name,
    preDepends: '',
    depends: '',
    provides: '',
    filename: `pool/${name}_${version}.deb`,
    size: 1,
    sha256: '0'.repeat(64),
    suite: 'bookworm',
    ...fields,
  };
}

const names = (r: { packages: readonly PackageRecord[] }) => r.packages.map((p) => `${p.name}=${p.version}`);

describe('parseRelations()', () => {
  test('parses alternatives, versions, arch qualifiers and obsolete operators', () => {
    assert.deepEqual(parseRelations('libc6 (>= 2.34), a:any | b (<< 2~), c (> 1), python3:native'), [
      [{ name: 'libc6', op: '>=', version: '2.34' }],
      [
        { name: 'a', archQualifier: 'any' },
        { name: 'b', op: '<<', version: '2~' },
      ],
      [{ name: 'c', op: '>=', version: '1' }],
      [{ name: 'python3', archQualifier: 'native' }],
    ]);
    assert.throws(() => parseRelations('a (>= )'), /invalid dependency/);
  });
});

describe('resolve()', () => {
  test('closes Pre-Depends and Depends, taking the first satisfiable alternative', () => {
    const u = new Universe(
      [
        [
          pkg('app', '1', { depends: 'nope | libb (>= 2) | libc', preDepends: 'liba' }),
          pkg('liba', '1'),
          pkg('libb', '2'),
          pkg('libc', '1'),
        ],
      ],
      ['bookworm'],
    );
    assert.deepEqual(names(resolve(u, ['app'])), ['app=1', 'liba=1', 'libb=2']);
  });

  test('a clause already met by a chosen package stays met (requested alternatives win)', () => {
    const u = new Universe(
      [
        [
          pkg('app', '1', { depends: 'usrmerge | usr-is-merged' }),
          pkg('usrmerge', '1'),
          pkg('usr-is-merged', '1'),
        ],
      ],
      ['b'],
    );
    assert.deepEqual(names(resolve(u, ['app', 'usr-is-merged'])), ['app=1', 'usr-is-merged=1']);
  });

  test('newest version across suites wins; version constraints pick an older one when needed', () => {
    const u = new Universe(
      [
        [pkg('a', '1.0-1'), pkg('b', '1', { depends: 'a (<< 1.0-2)' })],
        [pkg('a', '1.0-1+deb12u1', { suite: 'bookworm-security' })],
      ],
      ['bookworm', 'bookworm-security'],
    );
    const r = resolve(u, ['a']);
    assert.equal(r.packages[0]!.suite, 'bookworm-security');
    assert.deepEqual(names(resolve(u, ['b'])), ['a=1.0-1+deb12u1', 'b=1']);
  });

  test('virtual packages are satisfied through Provides, providers chosen by name', () => {
    const u = new Universe(
      [
        [
          pkg('app', '1', { depends: 'awk, libfoo-abi (>= 2)' }),
          pkg('mawk', '1', { provides: 'awk' }),
          pkg('gawk', '1', { provides: 'awk' }),
          pkg('libfoo2', '2', { provides: 'libfoo-abi (= 2)' }),
        ],
      ],
      ['b'],
    );
    assert.deepEqual(names(resolve(u, ['app'])), ['app=1', 'gawk=1', 'libfoo2=2']);
    assert.deepEqual(names(resolve(u, ['app', 'mawk'])), ['app=1', 'libfoo2=2', 'mawk=1']);
  });

  test('architecture qualifiers (:any, :native) resolve to the same package', () => {
    const u = new Universe(
      [[pkg('a', '1', { depends: 'python3:any, perl:native' }), pkg('python3', '3'), pkg('perl', '5')]],
      ['b'],
    );
    assert.deepEqual(names(resolve(u, ['a'])), ['a=1', 'perl=5', 'python3=3']);
  });

  test('excluded names count as met and are never installed', () => {
    const u = new Universe(
      [
        [
          pkg('ca', '1', { depends: 'openssl, debconf | debconf-2.0' }),
          pkg('openssl', '1'),
          pkg('debconf', '1'),
        ],
      ],
      ['b'],
    );
    assert.deepEqual(names(resolve(u, ['ca'], { exclude: ['openssl', 'debconf'] })), ['ca=1']);
  });

  test('essential adds every Essential: yes package', () => {
    const u = new Universe([[pkg('bash', '5', { essential: true }), pkg('x', '1')]], ['b']);
    assert.deepEqual(names(resolve(u, ['x'], { essential: true })), ['bash=5', 'x=1']);
  });

  test('an unsatisfiable dependency names the chain of packages', () => {
    const u = new Universe(
      [
        [
          pkg('app', '1', { depends: 'mid' }),
          pkg('mid', '1', { depends: 'gone (>= 3) | other' }),
          pkg('gone', '2'),
        ],
      ],
      ['bookworm'],
    );
    assert.throws(
      () => resolve(u, ['app']),
      (e: Error) =>
        e instanceof KilnError &&
        e.message ===
          'unsatisfiable dependency: app -> mid needs gone (>= 3) | other: no candidate in suites bookworm',
    );
    assert.throws(() => resolve(u, ['nosuch']), /cannot resolve package nosuch: no such package/);
    assert.throws(() => resolve(u, ['gone=9']), /cannot resolve package gone=9: no version 9 \(have 2\)/);
  });

  test('a conflicting version requirement on an already chosen package is reported', () => {
    const u = new Universe([[pkg('a', '2'), pkg('b', '1', { depends: 'a (<< 2)' }), pkg('a', '1')]], ['b']);
    assert.throws(() => resolve(u, ['a', 'b']), /b needs a \(<< 2\), but a 2 was already chosen/);
  });
});
