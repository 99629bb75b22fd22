import { spawnSync } from 'node:child_process';
import { copyFile, lstat, mkdir, readdir } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { BuildpackFailure, log } from '../../_shared/main.ts';

// The built artifact: one executable jar (a Main-Class in its manifest), plus whatever its
// manifest's Class-Path names next to it (maven-jar-plugin's addClasspath + copy-dependencies into
// target/lib). A self-contained jar (Spring Boot, shade) has no Class-Path and travels alone.

/** Artifact is the chosen jar: its path, Main-Class and the Class-Path entries that exist. */
export interface Artifact {
  readonly jar: string;
  readonly mainClass: string;
  readonly classPath: readonly string[];
}

const NOT_APP = /-(sources|javadoc|tests|test-sources)\.jar$|^original-/;

/**
 * findArtifact picks the jar: BP_MAVEN_BUILT_ARTIFACT (a path relative to the app, `*` allowed in
 * the file name; Paketo's name), else the one jar in target/ that is not sources, javadoc or tests.
 */
export async function findArtifact(appDir: string, env: NodeJS.ProcessEnv): Promise<Artifact> {
  const pattern = env.BP_MAVEN_BUILT_ARTIFACT?.trim() || 'target/*.jar';
  const rel = posix.normalize(pattern);
  if (rel.startsWith('/') || rel === '..' || rel.startsWith('../') || rel.includes('*/'))
    throw fail(
      `BP_MAVEN_BUILT_ARTIFACT "${pattern}" must be a path inside the app ("*" only in the file name)`,
    );
  const dir = join(appDir, posix.dirname(rel));
  const nameRe = new RegExp(
    `^${posix
      .basename(rel)
      .replace(/[.+^${}()|[\]\\?]/g, '\\$&')
      .replace(/\*/g, '[^/]*')}$`,
  );
  const names = (await readdir(dir).catch(() => [] as string[])).filter(
    (n) => nameRe.test(n) && (pattern !== 'target/*.jar' || !NOT_APP.test(n)),
  );
  const jars: string[] = [];
  for (const n of names.sort()) if ((await lstat(join(dir, n))).isFile()) jars.push(join(dir, n));
  if (jars.length === 0) {
    const wars = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.war'));
    if (wars.length)
      throw fail(
        `the build made ${wars.join(', ')}: war packaging needs a servlet container, which kiln/java does not provide yet`,
      );
    throw fail(`the build made no ${pattern} (set BP_MAVEN_BUILT_ARTIFACT to the jar to run)`);
  }
  if (jars.length > 1)
    throw fail(
      `the build made ${jars.length} jars matching ${pattern} (${jars.map((j) => posix.basename(j)).join(', ')}): choose one with BP_MAVEN_BUILT_ARTIFACT`,
    );
  const jar = jars[0]!;
  const manifest = readManifest(jar);
  const mainClass = manifest.get('main-class');
  if (!mainClass)
    throw fail(
      `${posix.basename(jar)} has no Main-Class in its manifest: configure maven-jar-plugin's <mainClass> (or build a Spring Boot/shaded jar)`,
    );
  return { jar, mainClass, classPath: await classPathFiles(jar, manifest.get('class-path') ?? '') };
}

/** readManifest reads META-INF/MANIFEST.MF's main section (keys lower-cased, continuation lines joined). */
export function readManifest(jar: string): Map<string, string> {
  const res = spawnSync('unzip', ['-p', jar, 'META-INF/MANIFEST.MF'], {
    encoding: 'utf8',
    maxBuffer: 4 << 20,
  });
  if (res.status !== 0)
    throw fail(`cannot read the manifest of ${posix.basename(jar)} (${res.stderr.trim()})`);
  return parseManifest(res.stdout);
}

export function parseManifest(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let last: string | undefined;
  for (const line of lines) {
    if (line === '') break; // the main section ends at the first empty line
    if (line.startsWith(' ') && last) {
      out.set(last, out.get(last)! + line.slice(1));
      continue;
    }
    const i = line.indexOf(':');
    if (i <= 0) continue;
    last = line.slice(0, i).trim().toLowerCase();
    out.set(last, line.slice(i + 1).trim());
  }
  return out;
}

/**
 * classPathFiles keeps the Class-Path entries that are plain relative paths to regular files
 * below the jar's directory (no `..`, no absolute path or URL scheme, no symlink).
 */
async function classPathFiles(jar: string, classPath: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of classPath.split(/\s+/).filter(Boolean)) {
    let rel: string;
    try {
      rel = decodeURIComponent(entry);
    } catch {
      rel = entry;
    }
    const norm = posix.normalize(rel);
    if (/^[a-z][a-z0-9+.-]*:/i.test(rel) || norm.startsWith('/') || norm === '..' || norm.startsWith('../')) {
      log(`  WARNING: Class-Path entry ${entry} points outside the build output: not shipped`);
      continue;
    }
    const st = await lstat(join(dirname(jar), norm)).catch(() => undefined);
    if (!st?.isFile()) {
      if (!st) log(`  WARNING: Class-Path entry ${entry} was not built: not shipped`);
      continue;
    }
    out.push(norm);
  }
  return out;
}

/** shipArtifact copies the jar and its Class-Path files into `layerDir`; returns the jar's new path. */
export async function shipArtifact(artifact: Artifact, layerDir: string): Promise<string> {
  const target = join(layerDir, posix.basename(artifact.jar));
  await copyFile(artifact.jar, target);
  for (const rel of artifact.classPath) {
    await mkdir(dirname(join(layerDir, rel)), { recursive: true });
    await copyFile(join(dirname(artifact.jar), rel), join(layerDir, rel));
  }
  return target;
}

function fail(detail: string): BuildpackFailure {
  return new BuildpackFailure(`kiln/java failed at step "artifact": ${detail}`);
}
