import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DaemonClient, parseDaemonHost } from './client.ts';

describe('daemon endpoint', () => {
  test('DOCKER_HOST values: unix and tcp; anything else is refused by name', () => {
    assert.deepEqual(parseDaemonHost('unix:///run/podman/podman.sock'), {
      socketPath: '/run/podman/podman.sock',
      display: 'unix:///run/podman/podman.sock',
    });
    assert.deepEqual(parseDaemonHost('tcp://127.0.0.1:2376'), {
      host: '127.0.0.1',
      port: 2376,
      display: 'tcp://127.0.0.1:2376',
    });
    assert.equal(parseDaemonHost('tcp://[::1]:1').host, '::1');
    assert.throws(
      () => parseDaemonHost('ssh://me@host'),
      /DOCKER_HOST ssh:\/\/me@host: kiln speaks to daemons/,
    );
    assert.throws(() => parseDaemonHost('unix://relative.sock'), /absolute/);
  });

  test('without DOCKER_HOST the first existing default socket is used; none is one clear error', () => {
    const none = new DaemonClient({ sockets: ['/nonexistent/docker.sock', '/nonexistent/podman.sock'] });
    assert.throws(
      () => none.endpoint(),
      /no Docker or Podman daemon: DOCKER_HOST is unset and none of \/nonexistent\/docker\.sock, \/nonexistent\/podman\.sock exists/,
    );
    const some = new DaemonClient({ sockets: ['/nonexistent/docker.sock', '/dev/null'] });
    assert.equal(some.endpoint().socketPath, '/dev/null');
  });
});
