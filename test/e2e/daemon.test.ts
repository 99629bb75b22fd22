// The Docker Engine API as an image location, against a real Podman Docker-compatible service
// started here (`podman system service` on a socket in a temp dir), reached over tcp:// through
// a byte-counting relay: builds are loaded into it and run by podman over the same storage (the
// app answers HTTP), a daemon image serves as run image and as previous image, and a rebuild
// sends only the layers the daemon lacks (counted on the wire, not taken from kiln's word).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { writeDockerArchive } from '../../src/archive/docker-archive.ts';
import { imageAccess } from '../../src/cli/commands/build.ts';
import { DaemonClient } from '../../src/daemon/client.ts';
import { RegistryClient } from '../../src/registry/client.ts';
import { ImageStore } from '../../src/store/store.ts';
import { Transports } from '../../src/transport/transports.ts';
import { runMain } from '../helpers/cli.ts';
import { type Podman, type PodmanService, startPodman } from '../helpers/podman.ts';
import { freePort } from '../helpers/registry.ts';
import { type E2E, makeE2E } from './build-fixture.ts';

const execFileP = promisify(execFile);

/** A static HTTP server: answers one request on 127.0.0.1:$PORT with the file argv[1], then exits. */
const SERVER_C = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
int main(int c, char **v) {
  char body[512] = "";
  FILE *f = c > 1 ? fopen(v[1], "r") : 0;
  if (f) { size_t n = fread(body, 1, sizeof body - 1, f); body[n] = 0; fclose(f); }
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET; a.sin_port = htons(atoi(getenv("PORT"))); a.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1)) { perror("listen"); return 1; }
  int k = accept(s, 0, 0);
  char req[1024]; read(k, req, sizeof req);
  char out[1024];
  int n = snprintf(out, sizeof out, "HTTP/1.0 200 OK\\r\\nContent-Length: %zu\\r\\n\\r\\n%s", strlen(body), body);
  write(k, out, n); close(k); return 0;
}
`;

/** A tcp relay to the daemon's socket that counts the bytes clients send. */
async function countingRelay(socket: string): Promise<{ port: number; sent: () => number; close(): void }> {
  let sent = 0;
  const server = net.createServer((client) => {
    const up = net.connect(socket);
    client.on('data', (c: Buffer) => {
      sent += c.length;
    });
    client.pipe(up).pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', end);
    up.on('error', end);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, sent: () => sent, close: () => server.close() };
}

let w: E2E;
let podman: Podman;
let svc: PodmanService;
let relay: Awaited<ReturnType<typeof countingRelay>>;
let server: string;
const debug: string[] = [];
let images: Transports;

before(async () => {
  w = await makeE2E();
  podman = await startPodman();
  svc = await podman.serve();
  relay = await countingRelay(svc.socket);
  server = path.join(w.root, 'server');
  await writeFile(`${server}.c`, SERVER_C);
  await execFileP('musl-gcc', ['-static', '-Os', '-o', server, `${server}.c`]);
  images = new Transports(
    {
      client: new RegistryClient({}),
      storeDir: w.store.dir,
      daemon: new DaemonClient({ host: `tcp://127.0.0.1:${relay.port}`, sockets: [] }),
      debug: (m) => debug.push(m),
    },
    w.store,
  );
});
after(async () => {
  relay?.close();
  await svc?.stop();
  await podman?.cleanup();
  await w?.cleanup();
});

/** An app whose program is the HTTP server. */
async function httpApp(name: string, message: string): Promise<string> {
  const dir = await w.app(name, message);
  await execFileP('cp', [server, path.join(dir, 'hello')]);
  return dir;
}

/** Runs `image` with podman over the daemon's storage and asks it over HTTP. */
async function askOverHttp(image: string): Promise<string> {
  const port = await freePort();
  const run = podman.run(image, [], { network: 'host', env: { PORT: String(port) }, user: '1000:1000' });
  let body: string | undefined;
  for (let i = 0; i < 200 && body === undefined; i++) {
    body = await fetch(`http://127.0.0.1:${port}/`)
      .then((r) => r.text())
      .catch(() => undefined);
    if (body === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  const r = await run;
  assert.equal(r.code, 0, `podman run ${image}: ${r.stderr}`);
  assert.ok(body !== undefined, `${image} never answered HTTP`);
  return body;
}

async function sizes(name: string): Promise<Map<string, number>> {
  const img = await images.parse(name).read();
  const cfg = await img.configFile();
  const out = new Map<string, number>();
  for (const [i, l] of (await img.layers()).entries()) out.set(cfg.rootfs.diff_ids[i]!, await l.size());
  return out;
}

describe('docker-daemon: against a Podman Docker-compatible service', () => {
  const NAME = 'docker-daemon:e2e-daemon-app';

  test('a build loads into the daemon; podman runs it by name and it answers HTTP', async () => {
    const app = await httpApp('daemon-first', 'hello from the daemon');
    const dest = images.parse(NAME);
    const before = relay.sent();
    await w.build(app, 'e2e-daemon-app', { images: imageAccess(dest, dest, images) });
    const firstUpload = relay.sent() - before;
    const all = [...(await sizes(NAME)).values()].reduce((a, b) => a + b, 0);
    assert.ok(firstUpload >= all, `a first load sends every layer (${firstUpload} < ${all})`);
    const listed = await podman.exec(['images', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.match(listed.stdout, /docker\.io\/library\/e2e-daemon-app:latest/);
    assert.match(await askOverHttp('e2e-daemon-app'), /hello from the daemon/);
  });

  test('a rebuild reads the previous image from the daemon and sends only the layers it lacks', async () => {
    const old = await sizes(NAME);
    const app = await httpApp('daemon-first', 'hello again from the daemon');
    const dest = images.parse(NAME);
    const before = relay.sent();
    const b = await w.build(app, 'e2e-daemon-app', { images: imageAccess(dest, dest, images) });
    const upload = relay.sent() - before;
    const now = await sizes(NAME);
    const fresh = [...now].filter(([d]) => !old.has(d));
    const reused = [...now].filter(([d]) => old.has(d));
    assert.ok(reused.length >= 2, `run image and unchanged layers are reused (${reused.length})`);
    const freshBytes = fresh.reduce((a, [, s]) => a + s, 0);
    const reusedBytes = reused.reduce((a, [, s]) => a + s, 0);
    // Only new layers cross the wire (plus the export of the previous image, which is a read).
    assert.ok(
      upload < freshBytes + 64 * 1024,
      `the load sent ${upload} bytes for ${freshBytes} bytes of new layers (${reusedBytes} reused)`,
    );
    assert.ok(debug.some((m) => /layers sent, [1-9]\d* already in the daemon/.test(m)));
    assert.match(b.log.lines.join('\n'), /Reusing|reus/i);
    assert.match(await askOverHttp('e2e-daemon-app'), /hello again from the daemon/);
  });

  test('a run image in the daemon is the run image of a build', async () => {
    // The fixture's run image, loaded with podman itself (not by kiln) under a name of its own.
    const run = (await w.store.find('e2e/run'))!;
    const file = path.join(w.root, 'run.tar');
    await writeDockerArchive(file, { image: run, tags: ['localhost/e2e/daemon-run:1'] });
    const loaded = await podman.load(file);
    assert.equal(loaded.code, 0, loaded.stderr);
    const app = await httpApp('daemon-run', 'on a daemon run image');
    const dest = images.parse('docker-daemon:e2e-daemon-run-app');
    const b = await w.build(app, 'e2e-daemon-run-app', {
      images: imageAccess(dest, dest, images),
      runImage: 'docker-daemon:localhost/e2e/daemon-run:1',
    });
    const built = await images.parse('docker-daemon:e2e-daemon-run-app').read();
    const base = (await run.configFile()).rootfs.diff_ids;
    assert.deepEqual((await built.configFile()).rootfs.diff_ids.slice(0, base.length), base);
    assert.match(
      (await built.configFile()).config?.Labels?.['io.buildpacks.lifecycle.metadata'] ?? '',
      /docker-daemon:localhost\/e2e\/daemon-run@sha256:/,
    );
    assert.ok(b.digest);
    assert.match(await askOverHttp('e2e-daemon-run-app'), /on a daemon run image/);
  });

  test('kiln build NAME --daemon: the builder is read from the daemon, the image loaded into it', async () => {
    // The builder only in the daemon (loaded by podman), the build and run images in kiln's store.
    const home = path.join(w.root, 'cli-home');
    const store = await ImageStore.open(ImageStore.defaultDir(home));
    for (const n of ['e2e/build', 'e2e/run']) await store.write((await w.store.find(n))!, [n]);
    const file = path.join(w.root, 'builder.tar');
    await writeDockerArchive(file, { image: w.builder, tags: ['docker.io/e2e/daemon-builder:latest'] });
    assert.equal((await podman.load(file)).code, 0);
    const app = await httpApp('daemon-cli', 'hello from kiln build --daemon');
    const r = await runMain(
      [
        '-v',
        'build',
        'e2e-cli-app',
        '--daemon',
        '--builder',
        'e2e/daemon-builder',
        '--path',
        app,
        '--network',
        'none',
        '--volume',
        '/usr:/usr',
        '--volume',
        '/etc:/etc',
      ],
      { HOME: home, PATH: process.env.PATH, KILN_HOME: home, CI: '1', DOCKER_HOST: `unix://${svc.socket}` },
    );
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.err, /with builder e2e\/daemon-builder/);
    assert.match(r.err, /daemon load docker\.io\/library\/e2e-cli-app:latest/);
    assert.match(await askOverHttp('e2e-cli-app'), /hello from kiln build --daemon/);
    // --daemon and --publish exclude each other.
    const both = await runMain(['build', 'x', '--daemon', '--publish'], {
      HOME: home,
      PATH: process.env.PATH,
      KILN_HOME: home,
    });
    assert.equal(both.code, 3);
  });

  test('an image the daemon already holds is only tagged (image copy within the daemon, no-op rebuilds)', async () => {
    const img = await images.parse(NAME).read();
    const before = relay.sent();
    const w2 = await images.parse('docker-daemon:localhost/copied/app:2').write(img);
    const sent = relay.sent() - before;
    assert.equal(w2.digest, await img.digest());
    assert.ok(sent < 16 * 1024, `tagging sent ${sent} bytes, no archive`);
    assert.ok(
      debug.some((m) => /daemon already holds sha256:[0-9a-f]{64}: tagged localhost\/copied\/app:2/.test(m)),
    );
    const listed = await podman.exec(['images', '--format', '{{.Repository}}:{{.Tag}}']);
    assert.match(listed.stdout, /localhost\/copied\/app:2/);
    await assert.rejects(
      images.parse(`docker-daemon:localhost/copied/app@sha256:${'a'.repeat(64)}`).write(img),
      /written under a tag, not a digest/,
    );
  });

  test('a missing daemon image is one clear error', async () => {
    await assert.rejects(
      images.parse('docker-daemon:localhost/nothing/here:1').read(),
      /image localhost\/nothing\/here:1 not found in the daemon \(tcp:\/\/127\.0\.0\.1:\d+\)/,
    );
  });
});
