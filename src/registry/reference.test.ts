import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { apiHost, isLoopback, parseReference, referenceString } from './reference.ts';

const D = `sha256:${'ab'.repeat(32)}`;

describe('parseReference', () => {
  test('Docker Hub normalisation: library/, latest, docker.io aliases', () => {
    assert.deepEqual(parseReference('alpine'), {
      registry: 'index.docker.io',
      repository: 'library/alpine',
      tag: 'latest',
      digest: undefined,
    });
    assert.equal(parseReference('docker.io/alpine:3').repository, 'library/alpine');
    assert.equal(parseReference('index.docker.io/acme/app').registry, 'index.docker.io');
    assert.equal(parseReference('acme/app').repository, 'acme/app');
    assert.equal(apiHost(parseReference('alpine').registry), 'registry-1.docker.io');
    assert.equal(referenceString(parseReference('alpine')), 'docker.io/library/alpine:latest');
  });

  test('host:port, tags, digests, docker:// prefix', () => {
    const r = parseReference(`docker://127.0.0.1:5000/a/b/c:v1.2@${D}`);
    assert.deepEqual(r, { registry: '127.0.0.1:5000', repository: 'a/b/c', tag: 'v1.2', digest: D });
    const d = parseReference(`localhost/app@${D}`);
    assert.equal(d.registry, 'localhost');
    assert.equal(d.tag, undefined, 'a digest alone gets no default tag');
    assert.equal(parseReference('ghcr.io/x/y').tag, 'latest');
    assert.equal(parseReference('[::1]:5000/x:t').registry, '[::1]:5000');
  });

  test('invalid references say what is wrong', () => {
    assert.throws(() => parseReference(''), /empty/);
    assert.throws(() => parseReference('Upper/Case'), /registry "Upper" is not a host|repository/);
    assert.throws(() => parseReference('app:bad tag'), /tag "bad tag"/);
    assert.throws(() => parseReference('app@sha256:1234'), /digest "sha256:1234"/);
    assert.throws(() => parseReference('host:5000/App'), /repository "App" must be lowercase/);
    assert.throws(() => parseReference('a//b'), /repository/);
  });

  test('loopback registries are recognised', () => {
    assert.ok(isLoopback('127.0.0.1:5000'));
    assert.ok(isLoopback('localhost'));
    assert.ok(isLoopback('[::1]:80'));
    assert.ok(!isLoopback('registry.example:5000'));
  });
});
