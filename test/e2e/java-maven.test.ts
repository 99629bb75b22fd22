import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DEBIAN_MAVEN_REPO,
  type MavenRepo,
  mavenDistributionZip,
  mirrorSettingsXml,
  startMavenRepo,
} from '../helpers/maven-repo.ts';
import type { Podman } from '../helpers/podman.ts';
import { assertRunUserNoShell, imageFiles, serveAndGet } from './lang-harness.ts';
import {
  copySample,
  freePort,
  kiln,
  kilnOk,
  layerShas,
  podmanOnKilnStore,
  storedImage,
} from './samples-harness.ts';

// kiln/java through `kiln build` with the default builder: Debian's OpenJDK and Maven from the
// stack's archive, the Maven plugins and commons-lang3 from a Maven repository this test serves on
// 127.0.0.1 — Debian's packaged /usr/share/maven-repo (scripts/bootstrap.sh installs the plugin
// packages) — named by a settings.xml in a `maven` binding. The image runs with podman on the
// shell-free run image as the run user, holds the jar and the JRE but no source and no ~/.m2.

const IMAGE = 'kiln-e2e-java';
// Where the project's Maven wrapper finds its Maven: the repository serves the host's Debian Maven
// packed as the distribution zip; the properties name an unreachable host, so only MVNW_REPOURL works.
const DIST = 'org/apache/maven/apache-maven/3.8.7/apache-maven-3.8.7-bin.zip';
const WRAPPER_PROPERTIES = `distributionUrl=https://maven.example.invalid/maven2/${DIST}\n`;
// A wrapper in the shape of Apache's script-only mvnw: the distribution named in
// .mvn/wrapper/maven-wrapper.properties (its repository part replaced by MVNW_REPOURL), downloaded
// once below MAVEN_USER_HOME, then run.
const MVNW = `#!/bin/sh
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
url=$(sed -n 's/^distributionUrl=//p' "$dir/.mvn/wrapper/maven-wrapper.properties" | tr -d '\\r')
[ -z "\${MVNW_REPOURL:-}" ] || url="\${MVNW_REPOURL%/}/org/apache/maven/\${url#*/org/apache/maven/}"
name=\${url##*/}
name=\${name%-bin.zip}
home="\${MAVEN_USER_HOME:-$HOME/.m2}/wrapper/dists/$name-bin/$(printf %s "$url" | md5sum | cut -c1-8)"
if [ ! -d "$home/$name" ]; then
  echo "mvnw: downloading $url" >&2
  tmp=$(mktemp -d)
  curl -fsS -o "$tmp/dist.zip" "$url"
  unzip -q "$tmp/dist.zip" -d "$tmp"
  chmod +x "$tmp/$name/bin/mvn"
  mkdir -p "$home"
  mv "$tmp/$name" "$home/$name"
  rm -rf "$tmp"
fi
MAVEN_HOME="$home/$name"
export MAVEN_HOME
exec "$MAVEN_HOME/bin/mvn" "$@"
`;

let podman: Podman;
let store: string;
let repo: MavenRepo;

/** `kiln build` of `dir` with the test's repository as BP_MAVEN_REPOSITORY_URL (and reachable). */
const buildFromMirror = (dir: string) => [
  'build',
  IMAGE,
  '--path',
  dir,
  '--env',
  `BP_MAVEN_REPOSITORY_URL=${repo.url}`,
  '--allow-host',
  `127.0.0.1:${repo.port}`,
];
let scratch: string;
let binding: string;

before(async () => {
  ({ podman, store } = await podmanOnKilnStore());
  repo = await startMavenRepo(undefined, undefined, new Map([[DIST, await mavenDistributionZip('3.8.7')]]));
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-java-'));
  binding = path.join(scratch, 'maven-binding');
  await mkdir(binding, { recursive: true });
  await writeFile(path.join(binding, 'type'), 'maven');
  await writeFile(path.join(binding, 'settings.xml'), mirrorSettingsXml(repo.url));
});
after(async () => {
  await repo?.close();
  await podman?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

const output = (r: { stdout: string; stderr: string }) => r.stdout + r.stderr;
const build = (dir: string, image = IMAGE) => [
  'build',
  image,
  '--path',
  dir,
  '--binding',
  `maven=${binding}`,
  '--allow-host',
  `127.0.0.1:${repo.port}`,
];

describe('kiln/java', {
  skip: hasDebianMavenRepo() ? false : `${DEBIAN_MAVEN_REPO} missing: run scripts/bootstrap.sh`,
}, () => {
  test('the java-maven sample: jar + JRE, no source, runs as the run user; a source-only rebuild reuses the JRE layer', async () => {
    const { dir, cleanup } = await copySample('java-maven');
    try {
      const res = await kilnOk(build(dir));
      assert.match(output(res), /OpenJDK 17 \(Debian 17\.[^)]*\) for Java 17 \(pom\.xml\)/);
      assert.match(output(res), /Maven repositories: settings\.xml of the maven binding maven/);
      assert.match(output(res), /Tests are skipped/);
      // The plugins and the dependency came from this repository (or the cached local repository).
      if (!/Restoring data for 'kiln\/java:m2'/.test(output(res)))
        assert.ok(
          repo.requests.some((r) => r.endsWith('/commons-lang3-3.12.0.jar')),
          repo.requests.join(' '),
        );
      assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), 'Hello from kiln/java\n');
      await assertRunUserNoShell(podman, store, IMAGE);
      const cfg = await (await storedImage(IMAGE)).configFile();
      assert.deepEqual(cfg.config?.Entrypoint, ['/cnb/process/web']);

      const files = await imageFiles(IMAGE);
      const paths = [...files.keys()];
      assert.deepEqual(
        paths.filter((p) => /\.java$|(^|\/)\.m2(\/|$)|pom\.xml$|(^|\/)m2\/repository/.test(p)),
        [],
      );
      assert.deepEqual(
        paths.filter((p) => /^workspace\/./.test(p)),
        [],
        'the workspace is empty',
      );
      assert.ok(files.has('layers/kiln_java/app/java-maven-1.0.0.jar'));
      assert.ok(files.has('layers/kiln_java/app/lib/commons-lang3-3.12.0.jar'), 'the Class-Path jar');
      assert.ok(files.has('layers/kiln_java/jre/usr/lib/jvm/java-17-openjdk-amd64/bin/java'));
      assert.ok(!paths.some((p) => p.endsWith('/bin/javac')), 'the JDK stays out of the image');
      assert.ok(!paths.some((p) => p.includes('usr/share/maven/')), 'Maven stays out of the image');
      const metadata = JSON.parse(cfg.config?.Labels?.['io.buildpacks.build.metadata'] ?? '{}') as {
        processes?: { type: string; command: string[]; args?: string[] }[];
      };
      const web = metadata.processes?.find((p) => p.type === 'web');
      assert.ok(
        [...(web?.command ?? []), ...(web?.args ?? [])].includes('-XX:MaxRAMPercentage=75.0'),
        JSON.stringify(web),
      );
      // Java's trusted CAs: a keystore made from the CA bundle (ca-certificates-java's maintainer
      // script never runs), where the JRE's cacerts link points.
      assert.match(output(res), /Java CA keystore: (\d{3} certificates from|kept \()/);
      assert.ok(files.has('layers/kiln_java/jre/etc/ssl/certs/java/cacerts'));
      const keytool = await podman.run(
        `oci:${store}:docker.io/library/${IMAGE}:latest`,
        ['-list', '-cacerts', '-storepass', 'changeit'],
        { entrypoint: '/layers/kiln_java/jre/usr/lib/jvm/java-17-openjdk-amd64/bin/keytool' },
      );
      assert.match(keytool.stdout, /Your keystore contains \d{3} entries/, keytool.stdout + keytool.stderr);
      // The JVM sizes its heap from the container's memory limit (75% of 512 MiB).
      const vm = await podman.run(
        `oci:${store}:docker.io/library/${IMAGE}:latest`,
        ['-XX:MaxRAMPercentage=75.0', '-XshowSettings:vm', '-version'],
        {
          entrypoint: '/layers/kiln_java/jre/usr/lib/jvm/java-17-openjdk-amd64/bin/java',
          flags: ['--memory', '512m'],
        },
      );
      const heap = /Max\. Heap Size \(Estimated\): (\d+(?:\.\d+)?)M/.exec(vm.stdout + vm.stderr);
      assert.ok(heap && Number(heap[1]) > 300 && Number(heap[1]) <= 384, vm.stdout + vm.stderr);
      const sbom = files.get('layers/sbom/launch/kiln_java/jre/sbom.cdx.json') ?? '';
      assert.match(sbom, /pkg:deb\/debian\/openjdk-17-jre-headless@/);
      const before = (await layerShas(IMAGE)).layers;

      // One line of source changes: the JRE layer is the same layer, the app is rebuilt.
      const app = path.join(dir, 'src/main/java/dev/kiln/sample/App.java');
      await writeFile(app, (await readFile(app, 'utf8')).replace('hello from kiln/java', 'hello again'));
      const again = await kilnOk(build(dir));
      assert.match(output(again), /reusing the jre layer/);
      const afterShas = (await layerShas(IMAGE)).layers;
      assert.equal(afterShas.get('kiln/java:jre'), before.get('kiln/java:jre'));
      assert.notEqual(afterShas.get('kiln/java:app'), before.get('kiln/java:app'));
      assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), 'Hello again\n');
    } finally {
      await cleanup();
    }
  });

  test("the project's mvnw: Maven downloaded from the configured mirror (MVNW_REPOURL) into the m2 cache layer, never into the image", async () => {
    const { dir, cleanup } = await copySample('java-maven');
    try {
      await writeFile(path.join(dir, 'mvnw'), MVNW, { mode: 0o755 });
      await mkdir(path.join(dir, '.mvn/wrapper'), { recursive: true });
      await writeFile(path.join(dir, '.mvn/wrapper/maven-wrapper.properties'), WRAPPER_PROPERTIES);
      const mirrored = buildFromMirror(dir);
      const downloads = () => repo.requests.filter((r) => r === `/${DIST}`).length;
      const res = await kilnOk(mirrored);
      assert.match(output(res), /using the project's Maven wrapper \(mvnw\)/);
      assert.ok(
        output(res).includes(`mvnw downloads Maven from ${repo.url.replace(/\/$/, '')} (MVNW_REPOURL)`),
        output(res),
      );
      assert.match(
        output(res),
        /mvnw: downloading http:\/\/127\.0\.0\.1:\d+\/org\/apache\/maven\/apache-maven/,
      );
      assert.equal(downloads(), 1);
      assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), 'Hello from kiln/java\n');
      const paths = [...(await imageFiles(IMAGE)).keys()];
      assert.deepEqual(
        paths.filter((p) => /wrapper\/dists|apache-maven|usr\/share\/maven\/|(^|\/)mvnw$|\.mvn\//.test(p)),
        [],
        'neither the wrapper nor the Maven it downloaded is in the image',
      );

      // The downloaded Maven is kept in the m2 cache layer: a source-only rebuild does not fetch it.
      const app = path.join(dir, 'src/main/java/dev/kiln/sample/App.java');
      await writeFile(app, (await readFile(app, 'utf8')).replace('hello from kiln/java', 'hello mvnw'));
      const again = await kilnOk(mirrored);
      assert.doesNotMatch(output(again), /mvnw: downloading/);
      assert.equal(downloads(), 1);
      assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), 'Hello mvnw\n');
    } finally {
      await cleanup();
    }
  });

  test("a pom.xml whose source does not compile fails with javac's error and the failed step (repository from BP_MAVEN_REPOSITORY_URL)", async () => {
    const { dir, cleanup } = await copySample('java-maven');
    try {
      const app = path.join(dir, 'src/main/java/dev/kiln/sample/App.java');
      await writeFile(app, (await readFile(app, 'utf8')).replace('server.start();', 'server.start()'));
      // The repository from BP_MAVEN_REPOSITORY_URL this time (no binding): a mirror of everything.
      const res = await kiln(buildFromMirror(dir));
      assert.notEqual(res.code, 0);
      assert.ok(
        output(res).includes(`Maven repositories: mirror ${repo.url} (BP_MAVEN_REPOSITORY_URL)`),
        output(res),
      );
      assert.match(output(res), /App\.java:\[\d+,\d+\] ';' expected/, "javac's own message");
      assert.match(output(res), /kiln\/java failed at step "mvn package": see the output above/);
    } finally {
      await cleanup();
    }
  });

  test("a pom.xml asking for a newer Java than Debian's fails clearly", async () => {
    const { dir, cleanup } = await copySample('java-maven');
    try {
      const pom = path.join(dir, 'pom.xml');
      await writeFile(
        pom,
        (await readFile(pom, 'utf8')).replace('<maven.compiler.release>17<', '<maven.compiler.release>99<'),
      );
      const res = await kiln(build(dir));
      assert.notEqual(res.code, 0);
      assert.match(
        output(res),
        /kiln\/java: pom\.xml asks for Java 99; the configured Debian suites offer OpenJDK 17/,
      );
    } finally {
      await cleanup();
    }
  });

  test('a Gradle project fails with "Gradle is not supported yet"', async () => {
    const dir = path.join(scratch, 'gradle');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'build.gradle.kts'), 'plugins { java }\n');
    const res = await kiln(['build', `${IMAGE}-gradle`, '--path', dir]);
    assert.notEqual(res.code, 0);
    assert.match(
      output(res),
      /kiln\/java failed at step "detect": Gradle is not supported yet \(found build\.gradle\.kts\)/,
    );
  });
});

function hasDebianMavenRepo(): boolean {
  return existsSync(path.join(DEBIAN_MAVEN_REPO, 'org/apache/maven/plugins/maven-jar-plugin/3.3.0'));
}
