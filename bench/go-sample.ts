// Go sample benchmark: a warm rebuild of samples/go-service after a one-line source change with
// `kiln build` (kiln/go: Debian's golang-1.19, build cache in a cache layer), side by side in one
// run, alternating, with the ko-style peer: `go build` with a warm build cache + the binary added
// as one layer on kiln's run image in an OCI layout (umoci insert), and with `go build` alone as
// the floor. Then image sizes: kiln's image against that single-layer image (what a best-practice
// multi-stage Dockerfile `FROM <run image>` + `COPY --from=build /app /app` gives).
// Targets: warm rebuild <= 1.0x the ko-style peer; size within 10% of the peer's.
//
// Same inputs on both sides: the same Go (Debian's golang-1.19, on the host from the package), the
// same flags (CGO_ENABLED=0 -trimpath -ldflags=-s -w), modules from the same local GOPROXY (a
// stand-in of the sample's dependency, as the e2e test serves), the same edit each round.
//
//   node bench/go-sample.ts [--rounds 5]
// Needs root, umoci, skopeo and golang-1.19-go (apt-get install -y golang-1.19-go umoci skopeo).
// Env: KILN_BENCH_HOME (default: the e2e home, whose stack images exist after the e2e tests).

import { execFile } from 'node:child_process';
import { access, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { readImage } from '../src/layout/layout.ts';
import { ImageStore } from '../src/store/store.ts';
import { goSumLines, startGoProxy } from '../test/helpers/go-proxy.ts';
import { opt } from './lib/args.ts';
import { childCpuMs } from './lib/process-cost.ts';
import { runToEnd } from './lib/run.ts';
import { median } from './lib/stats.ts';

const exec = promisify(execFile);
const rounds = Number(opt('--rounds', '5'));
const ROOT = path.resolve(import.meta.dirname, '..');
const KILN = path.join(ROOT, 'bin', 'kiln');
const KILN_HOME = process.env.KILN_BENCH_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home');
const GO = '/usr/lib/go-1.19/bin/go';
const IMAGE = 'kiln-bench-go-service';

for (const [what, check] of [
  [GO, () => access(GO)],
  ['umoci', () => exec('umoci', ['--version'])],
  ['skopeo', () => exec('skopeo', ['--version'])],
] as const) {
  if (
    !(await check().then(
      () => true,
      () => false,
    ))
  ) {
    console.error(`bench/go-sample.ts needs ${what}: apt-get install -y golang-1.19-go umoci skopeo`);
    process.exit(2);
  }
}

const UUID = {
  path: 'github.com/google/uuid',
  version: 'v1.6.0',
  files: {
    'go.mod': 'module github.com/google/uuid\n',
    'uuid.go':
      'package uuid\n\nimport (\n\t"crypto/rand"\n\t"fmt"\n)\n\nfunc NewString() string {\n\tvar b [16]byte\n\t_, _ = rand.Read(b[:])\n\treturn fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])\n}\n',
  },
};

/** CPU ms (user + system) of the commands `timed` ran, by command: less load-dependent than wall time. */
const cpuOf = new Map<string, number[]>();

async function timed(
  cmd: string,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  cwd?: string,
): Promise<number> {
  const c0 = childCpuMs();
  const { ms } = await runToEnd(cmd, argv, { env, ...(cwd ? { cwd } : {}) });
  cpuOf.set(cmd, [...(cpuOf.get(cmd) ?? []), childCpuMs() - c0]);
  return ms;
}

const work = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-go-'));
const proxy = await startGoProxy([UUID]);
try {
  const app = path.join(work, 'app');
  await cp(path.join(ROOT, 'samples', 'go-service'), app, { recursive: true });
  await writeFile(path.join(app, 'go.sum'), goSumLines(UUID));
  const mainGo = await readFile(path.join(app, 'main.go'), 'utf8');
  const edit = async (n: number) =>
    writeFile(path.join(app, 'main.go'), mainGo.replace('hello from Go', `hello from Go (edit ${n})`));
  const kilnEnv = { ...process.env, KILN_HOME, NO_COLOR: '1' };
  const kilnBuild = [
    'build',
    IMAGE,
    '--path',
    app,
    '--env',
    `GOPROXY=${proxy.url}`,
    '--allow-host',
    `127.0.0.1:${proxy.port}`,
  ];

  // Peer: the same Go and flags, its own warm caches; the run image as an OCI layout.
  const goEnv = {
    ...process.env,
    GOROOT: '/usr/lib/go-1.19',
    GOCACHE: path.join(work, 'gocache'),
    GOMODCACHE: path.join(work, 'gomod'),
    GOPATH: path.join(work, 'gopath'),
    GOPROXY: proxy.url,
    GOFLAGS: '',
    CGO_ENABLED: '0',
    GOTOOLCHAIN: 'local',
    HOME: work,
  };
  const bin = path.join(work, 'out', 'go-service');
  const goBuild = ['build', '-trimpath', '-buildvcs=false', '-ldflags=-s -w', '-o', bin, '.'];
  const layout = path.join(work, 'layout');
  await exec(KILN, ['image', 'copy', 'kiln/stacks/bookworm/run', `oci:${layout}:run`], { env: kilnEnv });
  const koImage = async () => {
    await mkdir(path.join(work, 'root', 'ko-app'), { recursive: true });
    return timed(
      'umoci',
      ['insert', '--image', `${layout}:run`, '--tag', 'app', bin, '/ko-app/go-service'],
      goEnv,
    );
  };

  // Warm-up: both sides cold once (builder, toolchain layer, module and build caches).
  console.log('warm-up (cold builds, not counted)...');
  await edit(0);
  await timed(KILN, kilnBuild, kilnEnv);
  await timed(GO, goBuild, goEnv, app);
  await koImage();
  cpuOf.clear();

  const kiln: number[] = [];
  const ko: number[] = [];
  const floor: number[] = [];
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  for (let r = 1; r <= rounds; r++) {
    // Alternate which side goes first.
    const sides = [
      async () => {
        await edit(r);
        kiln.push(await timed(KILN, kilnBuild, kilnEnv));
      },
      async () => {
        await edit(r);
        const g = await timed(GO, goBuild, goEnv, app);
        floor.push(g);
        ko.push(g + (await koImage()));
      },
    ];
    if (r % 2 === 0) sides.reverse();
    for (const s of sides) await s();
    console.log(
      `round ${r}: kiln ${(kiln.at(-1)! / 1000).toFixed(2)} s, go build + layer ${(ko.at(-1)! / 1000).toFixed(2)} s (go build ${(floor.at(-1)! / 1000).toFixed(2)} s)`,
    );
  }

  // Sizes: compressed bytes of every layer of each image.
  const store = await ImageStore.open(path.join(KILN_HOME, 'images'));
  const kimg = (await store.find(IMAGE))!;
  const kilnBytes = (await kimg.manifest()).layers.reduce((n, l) => n + l.size, 0);
  const peerBytes = (await (await readImage(layout, 'app')).manifest()).layers.reduce(
    (n, l) => n + l.size,
    0,
  );

  const mk = median(kiln);
  const mko = median(ko);
  const mf = median(floor);
  console.log(
    `\nGo sample, warm rebuild after a one-line change (${rounds} rounds, medians; load average before: ${load})`,
  );
  console.log(`  kiln build                    ${(mk / 1000).toFixed(2)} s`);
  console.log(
    `  go build + single-layer image ${(mko / 1000).toFixed(2)} s   kiln/peer ${(mk / mko).toFixed(2)}x (target <= 1.0x)`,
  );
  console.log(
    `  go build alone (floor)        ${(mf / 1000).toFixed(2)} s   kiln/floor ${(mk / mf).toFixed(2)}x`,
  );
  const cpu = (cmd: string) => median(cpuOf.get(cmd) ?? [0]) / 1000;
  const peerCpu = cpu(GO) + cpu('umoci');
  console.log(
    `  CPU seconds (user+system, medians): kiln ${cpu(KILN).toFixed(2)} s, go build + layer ${peerCpu.toFixed(2)} s (go build ${cpu(GO).toFixed(2)} s)   kiln/peer ${(cpu(KILN) / peerCpu).toFixed(2)}x`,
  );
  console.log('\nImage size (compressed layers)');
  console.log(`  kiln image                    ${(kilnBytes / 1e6).toFixed(2)} MB`);
  console.log(
    `  run image + binary layer      ${(peerBytes / 1e6).toFixed(2)} MB   kiln/peer ${(kilnBytes / peerBytes).toFixed(3)}x (target <= 1.10x)`,
  );
} finally {
  await proxy.close();
  await rm(work, { recursive: true, force: true });
}
