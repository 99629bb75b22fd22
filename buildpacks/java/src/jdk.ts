import { join } from 'node:path';
import { installedPackages } from '../../_shared/debian/dpkg-status.ts';
import { DEFAULT_SKIP, installDebLayer, type Universe } from '../../_shared/debian/install.ts';
import { runImageInstalled } from '../../_shared/debian/run-image.ts';
import { prependPath, writeEnv } from '../../_shared/layer.ts';
import { BuildpackFailure } from '../../_shared/main.ts';

export const TOOL = { name: 'kiln/java', version: '0.1.0' };

// The JDK is read from Debian's openjdk-N-* packages of the stack's suites. Default: 17 where the
// suites have it (the LTS bookworm ships), else the newest. A requested release (BP_JVM_VERSION,
// Paketo's name, or the pom's maven.compiler.release / java.version) takes that major if offered,
// else the newest newer one (a JDK compiles for older releases), else fails.

/** jdkMajors lists the N of every openjdk-N-jdk-headless the suites offer, ascending. */
export function jdkMajors(universe: Universe): number[] {
  const out: number[] = [];
  for (const name of universe.byName.keys()) {
    const m = /^openjdk-(\d+)-jdk-headless$/.exec(name);
    if (m && universe.byName.has(`openjdk-${m[1]}-jre-headless`)) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

/** chooseMajor picks the JDK major for `wanted` (undefined: the default) among `offered`. */
export function chooseMajor(offered: readonly number[], wanted: number | undefined, why: string): number {
  if (offered.length === 0)
    throw new BuildpackFailure(
      'kiln/java: the configured Debian suites offer no openjdk-N-jdk-headless package',
    );
  if (wanted === undefined) return offered.includes(17) ? 17 : offered.at(-1)!;
  const fit = offered.find((n) => n >= wanted);
  if (fit === undefined)
    throw new BuildpackFailure(
      `kiln/java: ${why} asks for Java ${wanted}; the configured Debian suites offer OpenJDK ${offered.join(', ')}`,
    );
  return fit;
}

/** Jdk is the build toolchain: JAVA_HOME and, unless the project's mvnw is used, Maven's home. */
export interface Jdk {
  readonly major: number;
  readonly layerDir: string;
  readonly javaHome: string;
  readonly mavenHome: string | undefined;
  readonly version: string;
}

// Debian keeps the JDK's configuration (java.security, ...) in /etc/java-N-openjdk and Maven's
// (m2.conf, settings.xml) in /etc/maven: both are needed, other /etc files are not.
const keepEtc = (p: string) => /^etc\/(maven|java-\d+-openjdk)(\/|$)/.test(p);

/** installJdk installs openjdk-N-jdk-headless (and maven) into the build layer `jdk`. */
export async function installJdk(
  layersDir: string,
  env: NodeJS.ProcessEnv,
  wanted: number | undefined,
  why: string,
  withMaven: boolean,
): Promise<Jdk> {
  let major = 0;
  const layer = await installDebLayer({
    layersDir,
    layer: 'jdk',
    packages: (universe) => {
      major = chooseMajor(jdkMajors(universe), wanted, why);
      return [`openjdk-${major}-jdk-headless`, ...(withMaven ? ['maven'] : [])];
    },
    types: { build: true, cache: true },
    env,
    tool: TOOL,
    // The chooser's inputs: a function's request is known by its text only, and another Java
    // release or the wrapper instead of Maven must not keep the previous layer.
    contents: `jdk-1 java=${wanted ?? 'default'} ${withMaven ? 'maven' : 'mvnw'}`,
    skip: (p) => DEFAULT_SKIP(p) && !keepEtc(p),
  });
  // A kept layer was not resolved again (the chooser did not run): its packages say which JDK.
  if (major === 0) {
    const pkg = layer.packages.find((p) => /^openjdk-\d+-/.test(p.name));
    if (!pkg) throw new BuildpackFailure('kiln/java: the jdk layer holds no openjdk-N package');
    major = Number(/^openjdk-(\d+)-/.exec(pkg.name)![1]);
  }
  // A package the build image already has is not in the layer: it is used from the image.
  const image = await installedPackages();
  const inLayer = (name: string) => layer.packages.some((p) => p.name === name);
  const jdkName = `openjdk-${major}-jdk-headless`;
  const root = (name: string) => (inLayer(name) ? layer.dir : '/');
  if (!inLayer(jdkName) && !image.has(jdkName))
    throw new BuildpackFailure(`kiln/java: the jdk layer holds no ${jdkName} package`);
  if (withMaven && !inLayer('maven') && !image.has('maven'))
    throw new BuildpackFailure('kiln/java: the jdk layer holds no maven package');
  return {
    major,
    layerDir: layer.dir,
    javaHome: join(root(jdkName), `usr/lib/jvm/java-${major}-openjdk-${debArch(env)}`),
    mavenHome: withMaven ? join(root('maven'), 'usr/share/maven') : undefined,
    version: layer.packages.find((p) => p.name === jdkName)?.version ?? image.get(jdkName) ?? '',
  };
}

function debArch(env: NodeJS.ProcessEnv): string {
  return env.KILN_DEBIAN_ARCH?.trim() || 'amd64';
}

// Dependencies of openjdk-N-jre-headless a headless server does not need: ca-certificates-java
// and java-common only work through maintainer scripts (which never run), util-linux is for
// the package's scripts, CUPS, NSS and fontconfig are loaded with dlopen only when printing,
// PKCS#11 or fonts are used, ALSA and pcsclite serve sound and smart cards (their JNI libraries
// are left out). The launch check verifies that every library left in the layer loads.
const NOT_SHIPPED = [
  'ca-certificates-java',
  'java-common',
  'util-linux',
  'libcups2',
  'libnss3',
  'libfontconfig1',
  'libasound2',
  'libpcsclite1',
];

/** Jre is the launch layer: where `java` is. */
export interface Jre {
  readonly layerDir: string;
  readonly javaHome: string;
  readonly reused: boolean;
  readonly version: string;
}

/** installJre installs openjdk-N-jre-headless (and its libraries the run image lacks) as the launch layer `jre`. */
export async function installJre(layersDir: string, env: NodeJS.ProcessEnv, major: number): Promise<Jre> {
  const installed = await runImageInstalled(NOT_SHIPPED);
  const layer = await installDebLayer({
    layersDir,
    layer: 'jre',
    packages: [`openjdk-${major}-jre-headless`],
    installed,
    types: { launch: true, cache: true },
    env,
    tool: TOOL,
    contents: 'jre-1',
    skip: (p) => (DEFAULT_SKIP(p) && !keepEtc(p)) || dropFromJre(p),
  });
  const javaHome = join(layer.dir, `usr/lib/jvm/java-${major}-openjdk-${debArch(env)}`);
  // Libraries the JRE's own libraries need (freetype, harfbuzz, lcms, ...): Debian installs some
  // below usr/lib, some (libselinux, libblkid) below lib.
  // The JRE's JNI libraries name libjvm.so without a path (java loads it first by its full path;
  // lib/server on the path says the same to the launch check and to other loaders).
  const libs = [
    join(javaHome, 'lib/server'),
    ...[`usr/lib/${triplet(env)}`, `lib/${triplet(env)}`].map((d) => join(layer.dir, d)),
  ];
  await prependPath(layer.dir, 'env.launch', 'LD_LIBRARY_PATH', libs.join(':'));
  await writeEnv(layer.dir, 'env.launch', 'JAVA_HOME', 'override', javaHome);
  const jre = layer.packages.find((p) => p.name === `openjdk-${major}-jre-headless`);
  return { layerDir: layer.dir, javaHome, reused: layer.reused, version: jre?.version ?? '' };
}

/**
 * dropFromJre leaves out the JRE libraries whose dependencies are not shipped (see NOT_SHIPPED):
 * sound (ALSA) and smart cards (pcsclite) serve no HTTP service.
 */
function dropFromJre(p: string): boolean {
  return /\/lib\/(libjsound|libj2pcsc)\.so$/.test(p);
}

function triplet(env: NodeJS.ProcessEnv): string {
  const arch = debArch(env);
  return arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
}
