// What loading a command costs before it does anything: Node.js built-ins that only some paths
// need are loaded on those paths, not at every start-up (node:http alone is ~2.5 ms of CPU, on
// every no-op rebuild). Checked in a fresh process per command module, from the sources (the
// bundle has the same module graph).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The built-ins a fresh process has loaded after importing `module` (a path in the repo). */
async function builtinsAfterImport(module: string): Promise<string[]> {
  const url = pathToFileURL(path.join(repo, module)).href;
  const script = `await import(${JSON.stringify(url)}); console.log(JSON.stringify(process.moduleLoadList));`;
  const { stdout } = await execFileP(
    process.execPath,
    ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script],
    {
      cwd: repo,
      maxBuffer: 1 << 24,
    },
  );
  const list = JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as string[];
  return list.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
}

// Loaded where they are used: a daemon's Engine API (node:http), a registry pull's paced young
// collections (node:vm), TLS by the HTTP client when it first connects.
const LAZY = ['http', '_http_client', 'https', 'tls', 'vm'];

describe('start-up of the commands a no-op rebuild runs', () => {
  for (const module of ['src/cli/main.ts', 'src/cli/commands/build.ts']) {
    test(`${module} loads none of ${LAZY.join(', ')}`, async () => {
      const loaded = await builtinsAfterImport(module);
      assert.ok(loaded.includes('fs'), `the probe sees built-ins: ${loaded.join(' ')}`);
      assert.deepEqual(
        LAZY.filter((m) => loaded.includes(m)),
        [],
      );
    });
  }

  test('the probe can fail: a module that imports node:http shows it', async () => {
    const loaded = await builtinsAfterImport('src/fleet/server.ts');
    assert.ok(loaded.includes('http'), loaded.join(' '));
  });
});

/**
 * The kiln source files (repo-relative) a fresh process has loaded after running `script` (an ES
 * module body with `repo` bound to the repository's file URL): every resolution is recorded.
 */
async function sourcesAfter(script: string): Promise<string[]> {
  const prelude = `import { registerHooks } from 'node:module';
const seen = new Set();
registerHooks({ resolve(s, c, next) { const r = next(s, c); seen.add(r.url); return r; } });
const repo = ${JSON.stringify(pathToFileURL(repo).href)};
`;
  const tail = `\nprocess.stdout.write('\\n' + JSON.stringify([...seen]));`;
  const { stdout } = await execFileP(
    process.execPath,
    ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', prelude + script + tail],
    { cwd: repo, maxBuffer: 1 << 24 },
  );
  const urls = JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as string[];
  const root = `${pathToFileURL(repo).href}/`;
  return urls.filter((u) => u.startsWith(root)).map((u) => u.slice(root.length));
}

describe('what `kiln --version` loads', () => {
  test('no command module: the version is printed before any command would run', async () => {
    const loaded = await sourcesAfter(`const { main } = await import(repo + '/src/cli/main.ts');
const out = [];
const io = { stdout: { write: (s) => out.push(s) }, stderr: { write: (s) => out.push(s) }, env: {}, isTTY: false };
const code = await main(['--version'], io);
if (code !== 0 || out.join('').trim() !== '0.1.0') throw new Error('kiln --version: ' + code + ' ' + out.join(''));`);
    assert.ok(loaded.includes('src/cli/main.ts'), `the probe sees kiln's modules: ${loaded.join(' ')}`);
    assert.deepEqual(
      loaded.filter((m) => m.startsWith('src/cli/commands/')),
      [],
    );
  });

  test('the probe can fail: `kiln build --help` loads the build command', async () => {
    const loaded = await sourcesAfter(`const { main } = await import(repo + '/src/cli/main.ts');
const io = { stdout: { write: () => {} }, stderr: { write: () => {} }, env: {}, isTTY: false };
await main(['build', '--help'], io);`);
    assert.ok(loaded.includes('src/cli/commands/build.ts'), loaded.join(' '));
  });
});
