// Node.js without surprises, through `kiln build` on the default (shell-free) run image: an app
// with no `engines` gets the newest LTS and it launches (libatomic1 is in the run image); a
// Procfile-only app (`web: node web.js`, no start script, no main, no dependencies) gets Node.js,
// online and offline (`--network none`, empty cache: the build image's Node.js with one warning);
// offline, a range that Node.js cannot meet fails naming the range and the version there is.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Podman } from '../helpers/podman.ts';
import {
  copySample,
  freePort,
  httpGet,
  kiln,
  kilnOk,
  podmanOnKilnStore,
  runKiln,
} from './samples-harness.ts';

let podman: Podman;
let podmanStore: string;
let tmp: string;

before(async () => {
  ({ podman, store: podmanStore } = await podmanOnKilnStore());
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-node-defaults-'));
});
after(async () => {
  await podman?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** serveBoth checks the image answers on its port with kiln run, then with podman; returns both bodies. */
async function serveBoth(image: string): Promise<[string, string]> {
  const port = await freePort();
  const run = runKiln([image, '-p', String(port)]);
  let viaKiln: string;
  try {
    viaKiln = await httpGet(port, 30_000);
  } finally {
    const out = await run.stop();
    assert.doesNotMatch(out.stdout + out.stderr, /error while loading shared libraries|not found/);
  }
  const port2 = await freePort();
  const ref = `oci:${podmanStore}:docker.io/library/${image}:latest`;
  const running = podman.run(ref, [], {
    network: 'host',
    env: { PORT: String(port2) },
    flags: ['--name', `${image}-${port2}`],
    timeoutMs: 60_000,
  });
  let viaPodman: string;
  try {
    viaPodman = await httpGet(port2, 30_000);
  } finally {
    await podman.exec(['rm', '-f', `${image}-${port2}`]);
    await running;
  }
  return [viaKiln, viaPodman];
}

/** procfileApp writes a dependency-free app started only by its Procfile. */
async function procfileApp(dir: string, pkg: Record<string, unknown>): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ name: 'p', private: true, ...pkg })}\n`,
  );
  await writeFile(
    path.join(dir, 'web.js'),
    // biome-ignore lint/suspicious/noTemplateCurlyInString: JavaScript source for the app, not a template here
    "require('node:http').createServer((q, s) => s.end(`web.js on ${process.version}\\n`)).listen(Number(process.env.PORT || 8080));\n",
  );
  await writeFile(path.join(dir, 'Procfile'), 'web: node web.js\n');
}

describe('Node.js apps on the default run image', () => {
  test('node-express with no engines: the newest LTS, and it launches (kiln run, podman)', async () => {
    const { dir, cleanup } = await copySample('node-express');
    try {
      const pkgFile = path.join(dir, 'package.json');
      const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as Record<string, unknown>;
      delete pkg.engines;
      await writeFile(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
      const image = 'kiln-e2e-node-no-engines';
      const res = await kilnOk(['build', image, '--path', dir]);
      const version = /Node\.js (\d+)\.\d+\.\d+ \(default/.exec(res.stdout + res.stderr)?.[1];
      assert.ok(version && Number(version) >= 24 && Number(version) % 2 === 0, res.stderr);
      const [a, b] = await serveBoth(image);
      assert.match(a, /express/i);
      assert.equal(a, b);
    } finally {
      await cleanup();
    }
  });

  test('an app whose dependency is a package inside it ("file:lib") launches (kiln run, podman)', async () => {
    const app = path.join(tmp, 'file-dep');
    await mkdir(path.join(app, 'lib'), { recursive: true });
    const files: Record<string, string> = {
      'package.json': `${JSON.stringify({ name: 'file-dep', version: '1.0.0', private: true, main: 'server.js', dependencies: { greet: 'file:lib' } })}\n`,
      // As npm writes it: the local package is a link, not a copy.
      'package-lock.json': `${JSON.stringify({
        name: 'file-dep',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: {
          '': { name: 'file-dep', version: '1.0.0', dependencies: { greet: 'file:lib' } },
          lib: { name: 'greet', version: '1.0.0' },
          'node_modules/greet': { resolved: 'lib', link: true },
        },
      })}\n`,
      'lib/package.json': '{"name":"greet","version":"1.0.0","main":"index.js"}\n',
      'lib/index.js': "module.exports = (who) => 'greetings from ' + who + '\\n';\n",
      'server.js':
        "require('node:http').createServer((q, s) => s.end(require('greet')('lib'))).listen(Number(process.env.PORT || 8080));\n",
    };
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(app, name), text);
    const image = 'kiln-e2e-node-file-dep';
    // From scratch: a modules layer cached by an earlier run must not stand in for this build's.
    await kilnOk(['build', image, '--path', app, '--clear-cache']);
    const [a, b] = await serveBoth(image);
    assert.equal(a, 'greetings from lib\n');
    assert.equal(a, b);
  });

  test('a Procfile-only app (web: node web.js, no deps) gets Node.js online', async () => {
    const app = path.join(tmp, 'procfile-online');
    await procfileApp(app, {});
    const image = 'kiln-e2e-node-procfile-online';
    const res = await kilnOk(['build', image, '--path', app]);
    assert.match(res.stdout + res.stderr, /kiln\/nodejs-engine/);
    const [a, b] = await serveBoth(image);
    assert.match(a, /^web\.js on v\d+\./);
    assert.equal(a, b);
  });

  test('offline with an empty cache: the build image’s Node.js, one warning line, and it launches', async () => {
    const app = path.join(tmp, 'procfile-offline');
    await procfileApp(app, {});
    const image = 'kiln-e2e-node-procfile-offline';
    const cache = path.join(tmp, 'empty-cache');
    const res = await kilnOk(['build', image, '--path', app, '--network', 'none', '--cache-dir', cache]);
    const out = res.stdout + res.stderr;
    const warnings = out.split('\n').filter((l) => /using the build image's Node\.js/.test(l));
    assert.equal(warnings.length, 1, out);
    assert.match(
      warnings[0]!,
      /warning: using the build image's Node\.js 18\.\d+\.\d+ .*instead of the newest LTS: the npm registry is unreachable/,
    );
    const [a, b] = await serveBoth(image);
    assert.match(a, /^web\.js on v18\./);
    assert.equal(a, b);
  });

  test('offline, a range the build image’s Node.js cannot meet fails naming the range and the version', async () => {
    const app = path.join(tmp, 'procfile-offline-range');
    await procfileApp(app, { engines: { node: '>=22' } });
    const res = await kiln([
      'build',
      'kiln-e2e-node-offline-range',
      '--path',
      app,
      '--network',
      'none',
      '--cache-dir',
      path.join(tmp, 'empty-cache-2'),
    ]);
    assert.notEqual(res.code, 0);
    assert.match(
      res.stdout + res.stderr,
      /package\.json engines\.node asks for Node\.js ">=22", which cannot be downloaded offline .*the build image's Node\.js is 18\.\d+\.\d+, which does not satisfy it/,
    );
  });
});
