import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findArtifact, parseManifest } from '../../buildpacks/java/src/artifact.ts';
import { chooseMajor } from '../../buildpacks/java/src/jdk.ts';
import { javaRelease, parseRelease } from '../../buildpacks/java/src/pom.ts';
import { mavenSettings, mirrorSettings, repositoryUrl } from '../../buildpacks/java/src/settings.ts';

// kiln/java's pure parts: the pom's Java release, the JDK choice, the manifest and the jar chosen
// (real jars made with zip), the Maven settings from a binding or BP_MAVEN_REPOSITORY_URL.

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-java-units-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('javaRelease()', () => {
  test('reads maven.compiler.release first, then target/source, then java.version', () => {
    const props = (body: string) => `<project><properties>${body}</properties></project>`;
    assert.equal(javaRelease(props('<maven.compiler.release>21</maven.compiler.release>')), 21);
    assert.equal(javaRelease(props('<maven.compiler.target>1.8</maven.compiler.target>')), 8);
    assert.equal(javaRelease(props('<java.version>17</java.version>')), 17);
    assert.equal(
      javaRelease(
        props('<java.version>11</java.version><maven.compiler.release>17</maven.compiler.release>'),
      ),
      17,
    );
    assert.equal(javaRelease(props('<!-- <java.version>21</java.version> -->')), undefined);
    // A Maven property reference (${jdk}) is not a version.
    assert.equal(javaRelease(props(`<maven.compiler.release>\${jdk}</maven.compiler.release>`)), undefined);
    assert.equal(parseRelease('17.0.2'), 17);
    assert.equal(parseRelease('latest'), undefined);
  });
});

describe('chooseMajor()', () => {
  test('17 by default, the requested major or the next newer one, else a clear failure', () => {
    assert.equal(chooseMajor([11, 17, 21], undefined, 'default'), 17);
    assert.equal(chooseMajor([21, 25], undefined, 'default'), 25);
    assert.equal(chooseMajor([17], 11, 'pom.xml'), 17);
    assert.equal(chooseMajor([17, 21], 21, 'pom.xml'), 21);
    assert.throws(
      () => chooseMajor([17], 21, 'pom.xml'),
      /pom\.xml asks for Java 21; the configured Debian suites offer OpenJDK 17/,
    );
    assert.throws(() => chooseMajor([], undefined, 'default'), /offer no openjdk-N-jdk-headless/);
  });
});

describe('the built artifact', () => {
  test('parseManifest joins continuation lines and stops at the main section', () => {
    const m = parseManifest(
      'Manifest-Version: 1.0\r\nMain-Class: a.B\r\nClass-Path: lib/x.jar li\r\n b/y.jar\r\n\r\nName: z\r\nMain-Class: no\r\n',
    );
    assert.equal(m.get('main-class'), 'a.B');
    assert.equal(m.get('class-path'), 'lib/x.jar lib/y.jar');
  });

  test('findArtifact picks the one jar with its Class-Path files and refuses entries outside target/', async () => {
    const app = path.join(tmp, 'app');
    const target = path.join(app, 'target');
    await mkdir(path.join(target, 'lib'), { recursive: true });
    await mkdir(path.join(target, 'META-INF'), { recursive: true });
    await writeFile(
      path.join(target, 'META-INF/MANIFEST.MF'),
      'Manifest-Version: 1.0\nMain-Class: dev.App\nClass-Path: lib/dep.jar ../../outside.jar /etc/passwd lib/missing.jar\n',
    );
    const zip = spawnSync(
      'python3',
      [
        '-c',
        'import sys,zipfile; zipfile.ZipFile(sys.argv[1], "w").write(sys.argv[2])',
        'app-1.0.jar',
        'META-INF/MANIFEST.MF',
      ],
      { cwd: target },
    );
    assert.equal(zip.status, 0, String(zip.stderr));
    await writeFile(path.join(target, 'lib/dep.jar'), 'dep');
    await writeFile(path.join(target, 'app-1.0-sources.jar'), 'sources');
    const found = await findArtifact(app, {});
    assert.equal(found.jar, path.join(target, 'app-1.0.jar'));
    assert.equal(found.mainClass, 'dev.App');
    assert.deepEqual(found.classPath, ['lib/dep.jar']);
    await assert.rejects(
      findArtifact(app, { BP_MAVEN_BUILT_ARTIFACT: '../x/*.jar' }),
      /must be a path inside the app/,
    );
    await assert.rejects(
      findArtifact(app, { BP_MAVEN_BUILT_ARTIFACT: 'target/none*.jar' }),
      /made no target\/none\*\.jar/,
    );
  });
});

describe('Maven settings', () => {
  test('a maven binding with settings.xml wins; BP_MAVEN_REPOSITORY_URL makes a mirror; credentials only in the binding', async () => {
    const root = path.join(tmp, 'bindings');
    await mkdir(path.join(root, 'corp'), { recursive: true });
    await writeFile(path.join(root, 'corp/type'), 'maven');
    await assert.rejects(
      mavenSettings({ SERVICE_BINDING_ROOT: root }, tmp, tmp),
      /the maven binding corp has no settings\.xml/,
    );
    await writeFile(path.join(root, 'corp/settings.xml'), '<settings/>');
    const s = await mavenSettings(
      { SERVICE_BINDING_ROOT: root, BP_MAVEN_REPOSITORY_URL: 'https://m.example/' },
      tmp,
      tmp,
    );
    assert.deepEqual(s.args, ['--settings', path.join(root, 'corp/settings.xml')]);

    const m = await mavenSettings(
      { SERVICE_BINDING_ROOT: path.join(tmp, 'none'), BP_MAVEN_REPOSITORY_URL: 'https://m.example/maven2' },
      tmp,
      tmp,
    );
    assert.deepEqual(m.args, ['--settings', path.join(tmp, 'kiln-mirror-settings.xml')]);
    assert.match(
      await readFile(m.args[1]!, 'utf8'),
      /<mirrorOf>\*<\/mirrorOf>\s*<url>https:\/\/m\.example\/maven2<\/url>/,
    );
    assert.match(m.describe, /mirror https:\/\/m\.example\/maven2/);
    assert.throws(() => repositoryUrl('https://u:p@m.example/'), /must not carry credentials/);
    assert.throws(() => repositoryUrl('http://m.example/'), /must be an https URL/);
    assert.equal(repositoryUrl('http://127.0.0.1:8081/repo'), 'http://127.0.0.1:8081/repo');
    assert.match(mirrorSettings('https://m/?a=1&b=<2>'), /<url>https:\/\/m\/\?a=1&amp;b=&lt;2&gt;<\/url>/);
  });
});
