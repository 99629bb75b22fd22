import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'smol-toml';
import { build, bundle, DIST, detect } from './harness.ts';

// The shell fast paths of the bundles: detect prechecks that write the Build Plan themselves
// (no Node.js start), and nodejs-engine's build launcher that runs on the cached Node.js. Each
// must give what the TypeScript code gives.

let tmp: string;
before(async () => {
  bundle();
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-bp-fast-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

let apps = 0;
async function app(
  files: Record<string, string>,
): Promise<{ app: string; layers: string; platform: string }> {
  const root = path.join(tmp, `app-${++apps}`);
  await mkdir(path.join(root, 'app'), { recursive: true });
  await mkdir(path.join(root, 'platform'), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(root, 'app', name), text);
  return {
    app: path.join(root, 'app'),
    layers: path.join(root, 'layers'),
    platform: path.join(root, 'platform'),
  };
}

/** detectJs runs the bundled detect.js itself (the TypeScript detect) and returns the plan it writes. */
function detectJs(
  name: string,
  o: { app: string; layers: string; platform: string },
  env: Record<string, string> = {},
): Promise<{ code: number; plan: string }> {
  const planPath = path.join(o.layers, `js-plan-${name}.toml`);
  return new Promise((resolve, reject) => {
    writeFile(planPath, '').then(() => {
      const child = spawn(
        process.execPath,
        [path.join(DIST, name, 'bin', 'detect.js'), o.platform, planPath],
        {
          cwd: o.app,
          env: { PATH: process.env.PATH, CNB_BUILDPACK_DIR: path.join(DIST, name), ...env },
          stdio: 'ignore',
        },
      );
      child.on('error', reject);
      child.on('close', async (code) => resolve({ code: code ?? 1, plan: await readFile(planPath, 'utf8') }));
    }, reject);
  });
}

/**
 * failingNode is a `node` that fails loudly: detect passing with it proves the shell precheck
 * answered by itself.
 */
async function failingNode(): Promise<string> {
  const node = path.join(tmp, 'failing-node', 'node');
  await mkdir(path.dirname(node), { recursive: true });
  await writeFile(node, '#!/bin/sh\necho "node was started" >&2\nexit 97\n');
  await chmod(node, 0o755);
  return node;
}

describe('detect prechecks write the same Build Plan as detect.js', () => {
  const express = {
    'package.json': JSON.stringify({
      name: 'x',
      scripts: { start: 'node server.js' },
      dependencies: { ms: '2.1.3' },
    }),
    'package-lock.json': '{}',
    'server.js': '',
  };
  for (const [name, files] of [
    ['npm-install', express],
    ['node-start', express],
    ['nodejs-engine', { 'package.json': JSON.stringify({ name: 'no-engines', main: 'x.js' }) }],
    ['go', { 'go.mod': 'module example.com/x\n', 'main.go': 'package main\n' }],
    ['java', { 'pom.xml': '<project/>\n' }],
    ['java', { 'build.gradle.kts': 'plugins { java }\n' }],
  ] as const) {
    test(`${name}: answered by the shell, same plan`, async () => {
      const o = await app(files);
      const shell = await detect(name, { ...o, node: await failingNode() });
      assert.equal(shell.code, 0, shell.stdout + shell.stderr);
      assert.doesNotMatch(shell.stderr, /node was started/);
      const js = await detectJs(name, o);
      assert.equal(js.code, 0);
      assert.deepEqual(parse(shell.plan), parse(js.plan));
    });
  }

  test('nodejs-engine: a declared version (engines, .nvmrc, BP_NODE_VERSION) goes to detect.js', async () => {
    for (const [files, env] of [
      [{ 'package.json': JSON.stringify({ engines: { node: '22.x' } }) }, {}],
      [{ 'package.json': '{}', '.nvmrc': '20\n' }, {}],
      [{ 'package.json': '{}' }, { BP_NODE_VERSION: '24' }],
      // A \u escape could spell "engines": not the shell's to judge.
      [{ 'package.json': '{"\\u0065ngines": {"node": "20"}}' }, {}],
    ] as const) {
      const o = await app(files);
      const res = await detect('nodejs-engine', { ...o, env });
      assert.equal(res.code, 0, res.stderr);
      const requires = (parse(res.plan) as { requires?: { metadata?: { version?: string } }[] }).requires;
      assert.ok(requires?.[0]?.metadata?.version, `a version is required: ${res.plan}`);
      assert.deepEqual(parse(res.plan), parse((await detectJs('nodejs-engine', o, env)).plan));
    }
  });

  test('npm-install without a lock file and node-start without an entry file still ask detect.js', async () => {
    const o = await app({ 'package.json': JSON.stringify({ dependencies: {} }) });
    const npm = await detect('npm-install', o);
    assert.equal(npm.code, 100);
    assert.match(npm.stdout, /looked for a lock file or dependencies in package.json/);
    const start = await detect('node-start', o);
    assert.equal(start.code, 100);
    assert.match(start.stdout, /looked for scripts.start or main in package.json/);
  });
});

describe('nodejs-engine build launcher', () => {
  /**
   * A layers dir whose restored `node` layer holds a recording wrapper around this Node.js, with
   * node.toml saying `version` (indented as other platforms' TOML writers do).
   */
  async function restored(version: string): Promise<{ o: Awaited<ReturnType<typeof app>>; marker: string }> {
    const o = await app({ 'package.json': JSON.stringify({ engines: { node: version } }) });
    const layers = path.join(o.layers, 'kiln_nodejs-engine');
    await mkdir(path.join(layers, 'node', 'bin'), { recursive: true });
    const marker = path.join(o.layers, 'cached-node-ran');
    const wrapper = path.join(layers, 'node', 'bin', 'node');
    await writeFile(wrapper, `#!/bin/sh\necho "$@" > '${marker}'\nexec '${process.execPath}' "$@"\n`);
    await chmod(wrapper, 0o755);
    await writeFile(
      path.join(layers, 'node.toml'),
      `[metadata]\n  version = "${version}"\n  integrity = "x"\n`,
    );
    return { o, marker };
  }

  test('runs the bundle on the restored Node.js of a major >= 18', async () => {
    const { o, marker } = await restored('22.1.0');
    // No registry configured: the build stops early, after the launcher chose its Node.js.
    const res = await build('nodejs-engine', { ...o, plan: ['node'] });
    assert.match(res.stderr, /no npm registry configured/);
    assert.match(await readFile(marker, 'utf8'), /bin\/build\.js/);
  });

  test('falls back to node on PATH for an older restored Node.js', async () => {
    const { o, marker } = await restored('16.20.2');
    const res = await build('nodejs-engine', { ...o, plan: ['node'] });
    assert.match(res.stderr, /no npm registry configured/);
    await assert.rejects(readFile(marker, 'utf8'), /ENOENT/);
  });
});

test('the bundles keep semver and the HTTP client out of detect', async () => {
  const detectJsText = await readFile(path.join(DIST, 'nodejs-engine', 'bin', 'detect.js'), 'utf8');
  assert.doesNotMatch(detectJsText, /node_modules\/semver/);
  assert.doesNotMatch(detectJsText, /node:https/);
});

describe('a build image without /bin/sh', () => {
  const hasBwrap = spawnSync('bwrap', ['--version']).status === 0;
  const NAMES = ['go', 'java', 'node-start', 'nodejs-engine', 'npm-install', 'procfile', 'python'];

  /** inSandbox runs `<bp>/bin/detect` in a bubblewrap root holding only the buildpack, the app and, with `sh`, the host's /usr. */
  function inSandbox(name: string, appDir: string, sh: boolean): { code: number; out: string } {
    const usr = sh
      ? ['--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib']
      : [];
    const lib64 = sh ? ['--symlink', 'usr/lib64', '/lib64'] : [];
    const r = spawnSync(
      'bwrap',
      [
        '--tmpfs',
        '/',
        ...usr,
        ...lib64,
        '--ro-bind',
        path.join(DIST, name),
        '/bp',
        '--bind',
        appDir,
        '/workspace',
        '--dir',
        '/platform',
        '--chdir',
        '/workspace',
        '--proc',
        '/proc',
        '--dev',
        '/dev',
        '--unshare-all',
        '--die-with-parent',
        '/bp/bin/detect',
        '/platform',
        '/workspace/plan.toml',
      ],
      { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } },
    );
    return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  }

  test('every bin/detect is an error naming itself (never exit 100, "does not apply"); with a shell the precheck answers', {
    skip: hasBwrap ? false : 'needs bubblewrap (apt-get install bubblewrap)',
  }, async () => {
    const o = await app({});
    for (const name of NAMES) {
      const without = inSandbox(name, o.app, false);
      assert.ok(without.code !== 0 && without.code !== 100, `${name} without sh: exit ${without.code}`);
      assert.match(without.out, /\/bp\/bin\/detect: No such file or directory/, name);
      const withSh = inSandbox(name, o.app, true);
      assert.equal(withSh.code, 100, `${name} with sh: ${withSh.out}`);
      assert.match(withSh.out, new RegExp(`^kiln/${name}: looked for `), name);
    }
  });
});
