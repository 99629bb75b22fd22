// Java (Maven) sample benchmark: a warm rebuild of samples/java-maven after a one-line source
// change with `kiln build` (kiln/java: Debian's OpenJDK 17 + Maven, local repository in a cache
// layer), side by side in one run, alternating, with a best-practice multi-stage Dockerfile built
// by buildah on the same Debian packages: a build stage on Debian bookworm (apt-get install
// openjdk-17-jdk-headless maven, a cached layer), `COPY pom.xml` then `COPY src`, and
// `RUN --mount=type=cache,target=/root/.m2 mvn -DskipTests package`; a JRE stage (apt-get install
// openjdk-17-jre-headless); the final stage on kiln's shell-free run image with the JRE directory,
// its /etc configuration and cacerts, and the jar + lib/ copied in (distroless style). Then image
// sizes (uncompressed layers) of the two images.
// Targets: warm rebuild <= 1.0x the Dockerfile; size within 10% of the Dockerfile's.
//
// Same inputs on both sides: the sample, the same Maven repository (Debian's packaged plugins
// served on 127.0.0.1, as the e2e test does), the same Debian archive (the machine's apt sources),
// the same edit each round.
//
//   node bench/java-sample.ts [--rounds 5]
// Needs root, buildah, skopeo, mmdebstrap and the Maven plugin packages of scripts/bootstrap.sh
// (apt-get install -y buildah skopeo mmdebstrap). Env: KILN_BENCH_HOME (default: the e2e home,
// whose stack images exist after the e2e tests).

import { execFile } from 'node:child_process';
import { access, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { readImage } from '../src/layout/layout.ts';
import { mirrorSettingsXml, startMavenRepo } from '../test/helpers/maven-repo.ts';
import { opt } from './lib/args.ts';
import { runToEnd } from './lib/run.ts';
import { median } from './lib/stats.ts';

const exec = promisify(execFile);
const rounds = Number(opt('--rounds', '5'));
const ROOT = path.resolve(import.meta.dirname, '..');
const KILN = path.join(ROOT, 'bin', 'kiln');
const KILN_HOME = process.env.KILN_BENCH_HOME ?? path.join(ROOT, '.kiln-test', 'e2e-home');
const IMAGE = 'kiln-bench-java-maven';
const JVM = '/usr/lib/jvm/java-17-openjdk-amd64';

for (const tool of ['buildah', 'skopeo', 'mmdebstrap']) {
  if (
    !(await exec(tool, ['--version']).then(
      () => true,
      () => false,
    ))
  ) {
    console.error(`bench/java-sample.ts needs ${tool}: apt-get install -y buildah skopeo mmdebstrap`);
    process.exit(2);
  }
}

function dockerfile(): string {
  return `# A best-practice multi-stage build: cached toolchain layer, dependencies cached in a cache
# mount, sources copied last, a distroless-style final image on the same run image as kiln's.
FROM localhost/bench-debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY settings.xml pom.xml ./
COPY src ./src
RUN --mount=type=cache,target=/root/.m2 mvn -s settings.xml -B -q --no-transfer-progress -DskipTests package

FROM localhost/bench-debian:bookworm AS jre
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless && rm -rf /var/lib/apt/lists/*

FROM localhost/kiln-run:latest
COPY --from=jre ${JVM} ${JVM}
COPY --from=jre /etc/java-17-openjdk /etc/java-17-openjdk
COPY --from=jre /etc/ssl/certs/java /etc/ssl/certs/java
COPY --from=build /app/target/java-maven-1.0.0.jar /app/app.jar
COPY --from=build /app/target/lib /app/lib
ENTRYPOINT ["${JVM}/bin/java", "-XX:MaxRAMPercentage=75.0", "-jar", "/app/app.jar"]
`;
}

async function timed(
  cmd: string,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  cwd?: string,
): Promise<number> {
  return (await runToEnd(cmd, argv, { env, ...(cwd ? { cwd } : {}) })).ms;
}

/** uncompressedBytes sums the uncompressed tar sizes of an OCI layout image's layers. */
async function uncompressedBytes(layout: string, ref: string): Promise<number> {
  let n = 0;
  for (const layer of await (await readImage(layout, ref)).layers())
    for await (const chunk of await layer.uncompressed()) n += (chunk as Buffer).length;
  return n;
}

const work = await mkdtemp(path.join(process.env.KILN_BENCH_TMP ?? '/var/tmp', 'kiln-bench-java-'));
const repo = await startMavenRepo();
const storage = ['--root', path.join(work, 'buildah'), '--runroot', path.join(work, 'buildah-run')];
const B = (args: readonly string[]) => exec('buildah', [...storage, ...args], { maxBuffer: 64 << 20 });
try {
  const app = path.join(work, 'app');
  await cp(path.join(ROOT, 'samples', 'java-maven'), app, { recursive: true });
  const appJava = path.join(app, 'src/main/java/dev/kiln/sample/App.java');
  const source = await readFile(appJava, 'utf8');
  const edit = (n: number) =>
    writeFile(appJava, source.replace('hello from kiln/java', `hello from kiln/java (edit ${n})`));
  await writeFile(path.join(app, 'settings.xml'), mirrorSettingsXml(repo.url));
  await writeFile(path.join(app, 'Dockerfile'), dockerfile());
  const binding = path.join(work, 'binding');
  await mkdir(binding);
  await writeFile(path.join(binding, 'type'), 'maven');
  await writeFile(path.join(binding, 'settings.xml'), mirrorSettingsXml(repo.url));
  const kilnEnv = { ...process.env, KILN_HOME, NO_COLOR: '1' };
  const kilnBuild = [
    'build',
    IMAGE,
    '--path',
    app,
    '--binding',
    `maven=${binding}`,
    '--allow-host',
    `127.0.0.1:${repo.port}`,
  ];

  // The peer's base images: Debian bookworm with apt (mmdebstrap, the machine's apt sources) and
  // kiln's run image (from kiln's store).
  console.log('preparing the Dockerfile base images...');
  const sources = (await access('/etc/apt/sources.list.d/debian.sources').then(
    () => true,
    () => false,
  ))
    ? ['/etc/apt/sources.list.d/debian.sources']
    : [];
  const debTar = path.join(work, 'debian.tar');
  await exec('mmdebstrap', ['--variant=apt', '--include=ca-certificates', 'bookworm', debTar, ...sources], {
    maxBuffer: 64 << 20,
  });
  const ctr = (await B(['from', 'scratch'])).stdout.trim();
  await B(['add', ctr, debTar, '/']);
  await B(['commit', '-q', ctr, 'localhost/bench-debian:bookworm']);
  await B(['rm', ctr]);
  await rm(debTar);
  const runTar = path.join(work, 'run.tar');
  await exec('skopeo', [
    'copy',
    '-q',
    `oci:${path.join(KILN_HOME, 'images')}:docker.io/kiln/stacks/bookworm/run:latest`,
    `oci-archive:${runTar}`,
  ]);
  const runId = (await B(['pull', '-q', `oci-archive:${runTar}`])).stdout.trim().split('\n').at(-1)!;
  await B(['tag', runId, 'localhost/kiln-run:latest']);
  const bud = [
    'bud',
    '--layers',
    '--network',
    'host',
    '--isolation',
    'chroot',
    '-q',
    '-t',
    'localhost/bench-java-peer',
    app,
  ];
  const peerBuild = () => timed('buildah', [...storage, ...bud], process.env, app);

  console.log('warm-up (cold builds, not counted)...');
  await edit(0);
  await timed(KILN, kilnBuild, kilnEnv);
  await peerBuild();

  const kiln: number[] = [];
  const peer: number[] = [];
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  for (let r = 1; r <= rounds; r++) {
    const sides = [
      async () => {
        await edit(r);
        kiln.push(await timed(KILN, kilnBuild, kilnEnv));
      },
      async () => {
        await edit(r);
        peer.push(await peerBuild());
      },
    ];
    if (r % 2 === 0) sides.reverse();
    for (const s of sides) await s();
    console.log(
      `round ${r}: kiln ${(kiln.at(-1)! / 1000).toFixed(2)} s, buildah ${(peer.at(-1)! / 1000).toFixed(2)} s`,
    );
  }

  const layout = path.join(work, 'layout');
  await exec(KILN, ['image', 'copy', IMAGE, `oci:${layout}:kiln`], { env: kilnEnv });
  await B(['push', '-q', 'localhost/bench-java-peer', `oci:${layout}:peer`]);
  const kilnBytes = await uncompressedBytes(layout, 'kiln');
  const peerBytes = await uncompressedBytes(layout, 'peer');

  const mk = median(kiln);
  const mp = median(peer);
  console.log(
    `\nJava (Maven) sample, warm rebuild after a one-line change (${rounds} rounds, medians; load average before: ${load})`,
  );
  console.log(`  kiln build                       ${(mk / 1000).toFixed(2)} s`);
  console.log(
    `  buildah bud (multi-stage)        ${(mp / 1000).toFixed(2)} s   kiln/peer ${(mk / mp).toFixed(2)}x (target <= 1.0x)`,
  );
  console.log('\nImage size (uncompressed layers)');
  console.log(`  kiln image                       ${(kilnBytes / 1e6).toFixed(1)} MB`);
  console.log(
    `  Dockerfile image (same run image) ${(peerBytes / 1e6).toFixed(1)} MB   kiln/peer ${(kilnBytes / peerBytes).toFixed(3)}x (target <= 1.10x)`,
  );
} finally {
  await repo.close();
  await exec('buildah', [...storage, 'rm', '--all']).catch(() => undefined);
  await exec('buildah', [...storage, 'rmi', '--all', '--force']).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}
