// Daemon benchmark: loading an app image into Podman's Docker-compatible service (started here,
// private storage) with kiln's docker-daemon: target vs `skopeo copy oci:… docker-daemon:…`, side
// by side in one run, alternating which goes first. The image is a ~200 MB base plus a 1 MB app
// layer; each round changes only the app layer, as a rebuild does. skopeo sends every layer on
// each load; kiln sends only what the daemon lacks. Bytes on the wire are counted by a relay.
// Run: `node bench/daemon.ts [--size-mb 200] [--rounds 3] [--keep]`.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DaemonClient } from '../src/daemon/client.ts';
import { writeLayer } from '../src/layers/layer-writer.ts';
import type { TarEntry } from '../src/layers/tar-writer.ts';
import { Layout } from '../src/layout/layout.ts';
import { imageFrom } from '../src/oci/memory.ts';
import { RegistryClient } from '../src/registry/client.ts';
import { Transports } from '../src/transport/transports.ts';
import { startPodman } from '../test/helpers/podman.ts';
import { freePort } from '../test/helpers/registry.ts';
import { args, opt } from './lib/args.ts';
import { randomStream } from './lib/random-data.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);
const sizeMB = Number(opt('--size-mb', '200'));
const rounds = Number(opt('--rounds', '3'));
const keep = args.includes('--keep');

const file = (p: string, size: number): TarEntry => ({
  path: p,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  size,
  open: () => randomStream(size),
});

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** A tcp relay to the socket counting client → daemon bytes (both tools go through it). */
async function relay(socket: string) {
  let sent = 0;
  const server = net.createServer((c) => {
    const up = net.connect(socket);
    c.on('data', (b: Buffer) => {
      sent += b.length;
    });
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, sent: () => sent, close: () => server.close() };
}

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-daemon-'));
const podman = await startPodman();
try {
  const svc = await podman.serve();
  const r = await relay(svc.socket);
  const layout = await Layout.init(path.join(work, 'layout'));
  const base: Awaited<ReturnType<typeof writeLayer>>[] = [];
  for (let i = 0; i < 4; i++)
    base.push(
      await writeLayer([file(`base${i}.bin`, Math.floor((sizeMB << 20) / 4))], {
        store: layout.blobs,
        level: 1,
      }),
    );
  const images = new Transports({
    client: new RegistryClient({}),
    storeDir: path.join(work, 'store'),
    daemon: new DaemonClient({ host: `tcp://127.0.0.1:${r.port}`, sockets: [] }),
  });
  // skopeo speaks https to tcp:// hosts; http:// is its plain-HTTP spelling of the same relay.
  const daemonHost = `http://127.0.0.1:${r.port}`;
  const version = async (n: number) => {
    const app = await writeLayer([file('app.bin', 1 << 20)], { store: layout.blobs, level: 1 });
    const img = imageFrom({
      config: { architecture: 'amd64', os: 'linux', config: { Labels: { round: String(n) } } },
      layers: [...base, app],
    });
    await layout.writeImage(img, `v${n}`);
    return img;
  };
  const kilnLoad = async (n: number, img: Awaited<ReturnType<typeof version>>) =>
    images.parse(`docker-daemon:localhost/bench/kiln:v${n}`).write(img);
  const skopeoLoad = (n: number) =>
    run('skopeo', [
      'copy',
      '--quiet',
      '--dest-daemon-host',
      daemonHost,
      `oci:${path.join(work, 'layout')}:v${n}`,
      `docker-daemon:localhost/bench/skopeo:v${n}`,
    ]);

  // Round 0 loads the base into the daemon for both (kiln's previous build, skopeo's first copy).
  const first = await version(0);
  await kilnLoad(0, first);
  await skopeoLoad(0);
  const k: number[] = [];
  const s: number[] = [];
  const kb: number[] = [];
  const sb: number[] = [];
  for (let n = 1; n <= rounds; n++) {
    const img = await version(n);
    const order = n % 2 ? ['kiln', 'skopeo'] : ['skopeo', 'kiln'];
    for (const who of order) {
      const before = r.sent();
      if (who === 'kiln') {
        k.push(await timed(() => kilnLoad(n, img)));
        kb.push(r.sent() - before);
      } else {
        s.push(await timed(() => skopeoLoad(n)));
        sb.push(r.sent() - before);
      }
    }
  }
  const mib = (b: number) => (b / 1048576).toFixed(1);
  console.log(
    `load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log(`rebuild load of a ~${sizeMB} MB base + 1 MB app layer into podman ${rounds}x (median):`);
  console.log(`  kiln docker-daemon:   ${median(k).toFixed(2)} s, ${mib(median(kb))} MiB sent`);
  console.log(`  skopeo docker-daemon: ${median(s).toFixed(2)} s, ${mib(median(sb))} MiB sent`);
  console.log(
    `  ratio kiln/skopeo: time ${(median(k) / median(s)).toFixed(2)}x, bytes ${(median(kb) / median(sb)).toFixed(3)}x`,
  );
  r.close();
  await svc.stop();
} finally {
  await podman.cleanup();
  if (!keep) await fs.rm(work, { recursive: true, force: true });
}
