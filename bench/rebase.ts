// Rebase benchmark: `kiln rebase REF --publish` against a local
// docker-registry for an app image with ~1 MB of app layers and one with ~500 MB, side by side,
// alternating, rebasing back and forth between two run images of the same repository (a routine
// patch each time). Reports the median wall time of the whole CLI process and of the rebase in
// process (main()), the big/small ratio (target <= 1.1: constant in app size) and the blob bytes
// uploaded per rebase through a counting proxy (target: only the new config, zero layer bytes).
// Run: `node bench/rebase.ts [--big-mb 500] [--rounds 5] [--keep]`.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { main } from '../src/cli/main.ts';
import { writeLayer } from '../src/layers/layer-writer.ts';
import type { TarEntry } from '../src/layers/tar-writer.ts';
import { Layout } from '../src/layout/layout.ts';
import type { Layer } from '../src/oci/image.ts';
import { imageFrom } from '../src/oci/memory.ts';
import { RegistryClient } from '../src/registry/client.ts';
import { parseReference } from '../src/registry/reference.ts';
import { writeImage } from '../src/registry/write.ts';
import { appImage, runImage } from '../test/helpers/cnb-images.ts';
import { startCountingProxy, startRegistry } from '../test/helpers/registry.ts';
import { args, opt } from './lib/args.ts';
import { randomStream } from './lib/random-data.ts';
import { median } from './lib/stats.ts';

const run = promisify(execFile);
const bigMB = Number(opt('--big-mb', '500'));
const rounds = Number(opt('--rounds', '5'));
const keep = args.includes('--keep');
const kilnBin = path.resolve(import.meta.dirname, '..', 'bin', 'kiln');

// App layers of incompressible data, written once into a layout's blob store (streamed).
async function randomLayers(layout: Layout, totalMB: number, count: number): Promise<Layer[]> {
  const out: Layer[] = [];
  const per = Math.floor((totalMB * 1024 * 1024) / count);
  for (let l = 0; l < count; l++) {
    const entries: TarEntry[] = [
      { path: 'workspace', type: 'dir', mode: 0o755, uid: 1000, gid: 1000 },
      {
        path: `workspace/blob-${l}.bin`,
        type: 'file',
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        size: per,
        open: () => randomStream(per),
      },
    ];
    out.push(await writeLayer(entries, { store: layout.blobs, level: 1 }));
  }
  return out;
}

const quiet = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-rebase-'));
const reg = await startRegistry();
const proxy = await startCountingProxy(reg.host);
try {
  const client = new RegistryClient({});
  const host = proxy.host;
  const runV1 = await runImage({ patch: '1' });
  const runV2 = await runImage({ patch: '2' });
  await writeImage(client, parseReference(`${host}/kiln/run:v1`), runV1);
  await writeImage(client, parseReference(`${host}/kiln/run:v2`), runV2);
  const layout = await Layout.init(path.join(work, 'blobs'));
  console.log(`making app images (1 MB and ${bigMB} MB of app layers) ...`);
  const apps: Record<string, string> = {};
  for (const [name, mb, count] of [
    ['small', 1, 1],
    ['big', bigMB, 5],
  ] as const) {
    const base = await appImage({
      run: runV1,
      runImageName: `${host}/kiln/run:v1`,
      runImageReference: `${host}/kiln/run@${await runV1.digest()}`,
    });
    const extra = await randomLayers(layout, mb, count);
    const cfg = await base.configFile();
    const img = imageFrom({
      config: { ...cfg, history: undefined },
      layers: [...(await base.layers()), ...extra],
    });
    const ref = `${host}/apps/${name}:latest`;
    await writeImage(client, parseReference(ref), img);
    apps[name] = ref;
  }
  const env = { ...process.env, KILN_HOME: path.join(work, 'kiln-home'), CI: '1' } as Record<string, string>;
  const times: Record<string, { cli: number[]; inproc: number[]; bytes: number[] }> = {
    small: { cli: [], inproc: [], bytes: [] },
    big: { cli: [], inproc: [], bytes: [] },
  };
  let target = 'v2';
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 === 0 ? ['small', 'big'] : ['big', 'small']) {
      for (const mode of ['cli', 'inproc'] as const) {
        proxy.reset();
        const argv = ['-q', 'rebase', apps[name]!, '--publish', '--run-image', `${host}/kiln/run:${target}`];
        const t = process.hrtime.bigint();
        if (mode === 'cli') await run(kilnBin, argv, { env });
        else {
          const code = await main(argv, { stdout: quiet(), stderr: quiet(), env, isTTY: false });
          if (code !== 0) throw new Error(`rebase failed with ${code}`);
        }
        times[name]![mode].push(Number(process.hrtime.bigint() - t) / 1e6);
        times[name]!.bytes.push(proxy.stats.uploadBytes);
        target = target === 'v2' ? 'v1' : 'v2';
      }
    }
  }
  const row = (name: string) =>
    `${name.padEnd(6)} cli median ${median(times[name]!.cli).toFixed(0)} ms, in-process median ${median(times[name]!.inproc).toFixed(0)} ms, bytes uploaded per rebase: ${[...new Set(times[name]!.bytes)].join('/')}`;
  console.log(row('small'));
  console.log(row('big'));
  console.log(
    `big/small ratio: cli ${(median(times.big!.cli) / median(times.small!.cli)).toFixed(2)}, in-process ${(median(times.big!.inproc) / median(times.small!.inproc)).toFixed(2)}`,
  );
} finally {
  await proxy.stop();
  await reg.stop();
  if (!keep) await fs.rm(work, { recursive: true, force: true });
}

// Rebase vs rebuild after a run-image change (a patched run image): the e2e fixture's app (a 3-buildpack
// test builder) built on e2e/run, then a patched e2e/run: a rebuild onto it against a rebase.
{
  const { makeE2E } = await import('../test/e2e/build-fixture.ts');
  const { appendLayers, addLabels } = await import('../src/oci/mutate.ts');
  const { rebase } = await import('../src/rebase/rebase.ts');
  const { tarLayer } = await import('../test/helpers/cnb-images.ts');
  const w = await makeE2E();
  try {
    const app = await w.app('bench', 'rebase vs rebuild');
    await w.build(app, 'bench-app');
    const rebuilds: number[] = [];
    const rebases: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const run = (await w.store.find('e2e/run'))!;
      const patched = addLabels(appendLayers(run, await tarLayer({ [`etc/patch-${r}`]: `patch ${r}\n` })), {
        'org.opencontainers.image.version': `patch-${r}`,
      });
      await w.store.write(patched, [`e2e/run-patched-${r}`]);
      let t = process.hrtime.bigint();
      await w.build(app, `bench-rebuilt-${r}`, {
        runImage: `e2e/run-patched-${r}`,
        previousImage: 'bench-app',
      });
      rebuilds.push(Number(process.hrtime.bigint() - t) / 1e6);
      t = process.hrtime.bigint();
      const res = await rebase({
        image: (await w.store.find('bench-app'))!,
        imageName: 'bench-app',
        runImage: patched,
        runImageName: `e2e/run-patched-${r}`,
        runImageReference: `e2e/run-patched-${r}@${await patched.digest()}`,
        explicitRunImage: true,
        force: true,
      });
      await w.store.write(res.image, [`bench-rebased-${r}`]);
      rebases.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    console.log(
      `after a run-image change (e2e 3-buildpack app, local store): rebuild median ${median(rebuilds).toFixed(0)} ms, rebase median ${median(rebases).toFixed(0)} ms, ratio ${(median(rebuilds) / median(rebases)).toFixed(1)}x`,
    );
  } finally {
    await w.cleanup();
  }
}
