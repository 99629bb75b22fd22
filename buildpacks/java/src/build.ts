import { mkdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { keepPatterns, removeSource } from '../../_shared/app-source.ts';
import { splitCommand } from '../../_shared/command.ts';
import { buildContext } from '../../_shared/context.ts';
import { run } from '../../_shared/exec.ts';
import { exists } from '../../_shared/fsutil.ts';
import { writeLaunchToml } from '../../_shared/launch.ts';
import { resetLayer, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import { findArtifact, shipArtifact } from './artifact.ts';
import { caBundle, writeCacerts } from './cacerts.ts';
import { installJdk, installJre } from './jdk.ts';
import { javaRelease, parseRelease } from './pom.ts';
import { mavenSettings } from './settings.ts';

function fail(step: string, detail = 'see the output above'): BuildpackFailure {
  return new BuildpackFailure(`kiln/java failed at step "${step}": ${detail}`);
}

// Paketo's default is -Dmaven.test.skip=true (tests not even compiled); -DskipTests compiles them
// and skips running them, so a test that does not compile still fails the build.
const DEFAULT_ARGS = '-DskipTests --batch-mode --no-transfer-progress package';
/** The JVM sizes its heap from the container's memory limit (JDK 10+ read cgroups v1 and v2). */
const MEMORY_FLAGS = ['-XX:MaxRAMPercentage=75.0'];

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  for (const f of ['build.gradle', 'build.gradle.kts'])
    if ((await exists(join(ctx.appDir, f))) && !(await exists(join(ctx.appDir, 'pom.xml'))))
      throw fail(
        'detect',
        `Gradle is not supported yet (found ${f}); kiln/java builds Maven projects (pom.xml)`,
      );
  const pom = await readFile(join(ctx.appDir, 'pom.xml'), 'utf8').catch(() => undefined);
  if (pom === undefined) throw fail('detect', 'mvnw without a pom.xml: nothing to build');
  const { wanted, why } = requestedJava(ctx.env, pom);
  const wrapper = await exists(join(ctx.appDir, 'mvnw'));
  const jdk = await installJdk(ctx.layersDir, ctx.env, wanted, why, !wrapper);
  log(`  OpenJDK ${jdk.major} (Debian ${jdk.version})${wanted ? ` for Java ${wanted} (${why})` : ''}`);
  const jdkJava = join(jdk.javaHome, 'bin', 'java');
  await writeCacerts(jdk.layerDir, jdkJava, caBundle(ctx.env), ctx.env);
  const m2 = join(ctx.layersDir, 'm2');
  await mkdir(join(m2, 'repository'), { recursive: true });
  await writeLayerToml(ctx.layersDir, 'm2', { cache: true }, {});

  // The m2 cache layer holds the generated mirror settings (a URL, no credentials) if any.
  const settings = await mavenSettings(ctx.env, ctx.platformDir, m2);
  log(`  Maven repositories: ${settings.describe}`);
  const userArgs = splitCommand(ctx.env.BP_MAVEN_BUILD_ARGUMENTS?.trim() || DEFAULT_ARGS);
  if (!userArgs) throw fail('arguments', 'BP_MAVEN_BUILD_ARGUMENTS needs a shell (quotes do not close)');
  const args = [`-Dmaven.repo.local=${join(m2, 'repository')}`, ...settings.args, ...userArgs];
  const command = wrapper
    ? join(ctx.appDir, 'mvnw')
    : join(jdk.mavenHome ?? '/usr/share/maven', 'bin', 'mvn');
  if (wrapper) log("  using the project's Maven wrapper (mvnw)");
  log(`  ${wrapper ? './mvnw' : 'mvn'} ${userArgs.join(' ')}`);
  const env = mavenEnv(ctx.env, jdk.javaHome, jdk.mavenHome, m2);
  if (wrapper && settings.mirror && !env.MVNW_REPOURL) {
    // mvnw downloads Maven itself from Maven Central unless told where: the same mirror.
    env.MVNW_REPOURL = settings.mirror.replace(/\/+$/, '');
    log(`  mvnw downloads Maven from ${env.MVNW_REPOURL} (MVNW_REPOURL)`);
  }
  const res = await run(wrapper ? 'sh' : command, wrapper ? [command, ...args] : args, {
    cwd: ctx.appDir,
    env,
  });
  if (res.code !== 0) throw fail(wrapper ? 'mvnw package' : 'mvn package');

  const artifact = await findArtifact(ctx.appDir, ctx.env);
  const appLayer = await resetLayer(ctx.layersDir, 'app');
  const jar = await shipArtifact(artifact, appLayer);
  await writeLayerToml(ctx.layersDir, 'app', { launch: true }, { 'main-class': artifact.mainClass });
  log(
    `  built ${posix.basename(artifact.jar)} (Main-Class ${artifact.mainClass}${artifact.classPath.length ? `, ${artifact.classPath.length} Class-Path jars` : ''})`,
  );

  const jre = await installJre(ctx.layersDir, ctx.env, jdk.major);
  await writeCacerts(jre.layerDir, jdkJava, caBundle(ctx.env), ctx.env);
  const java = join(jre.javaHome, 'bin', 'java');
  await writeLaunchToml(ctx.layersDir, [
    { type: 'web', command: [java, ...MEMORY_FLAGS, '-jar', jar], default: true },
  ]);
  log(`  process web: java ${MEMORY_FLAGS.join(' ')} -jar ${jar}`);
  const removed = await removeSource(ctx.appDir, await keepPatterns(ctx.appDir, ctx.env));
  log(
    `  removed the source and build output from the image (${removed} entries; keep files with BP_KEEP_FILES)`,
  );
  return 0;
});

/** requestedJava: BP_JVM_VERSION (Paketo's name), else what pom.xml's properties say, else nothing. */
function requestedJava(env: NodeJS.ProcessEnv, pom: string): { wanted?: number; why: string } {
  const fromEnv = env.BP_JVM_VERSION?.trim();
  if (fromEnv) {
    const n = parseRelease(fromEnv.replace(/\.\*$/, ''));
    if (n === undefined) throw fail('jdk', `BP_JVM_VERSION "${fromEnv}" is not a Java version like 17`);
    return { wanted: n, why: 'BP_JVM_VERSION' };
  }
  const n = javaRelease(pom);
  return n === undefined ? { why: 'default' } : { wanted: n, why: 'pom.xml' };
}

function mavenEnv(
  base: NodeJS.ProcessEnv,
  javaHome: string,
  mavenHome: string | undefined,
  m2: string,
): NodeJS.ProcessEnv {
  return {
    ...base,
    JAVA_HOME: javaHome,
    PATH: `${javaHome}/bin:${mavenHome ? `${mavenHome}/bin:` : ''}${base.PATH ?? '/usr/bin:/bin'}`,
    ...(mavenHome ? { MAVEN_HOME: mavenHome, M2_HOME: mavenHome } : {}),
    // mvnw downloads Maven below MAVEN_USER_HOME (default ~/.m2): the cache layer, not the image.
    MAVEN_USER_HOME: m2,
    // ~/.m2 would otherwise be the build user's home, which never reaches the image either.
    HOME: base.HOME ?? '/tmp',
  };
}
