import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Podman } from '../helpers/podman.ts';
import { type PypiIndex, startPypiIndex } from '../helpers/pypi-index.ts';
import { serveAndGet } from './lang-harness.ts';
import { freePort, kilnOk, podmanOnKilnStore } from './samples-harness.ts';

// A project using two languages: Node.js builds its assets (npm's `build` script), Python serves
// them; project.toml names the group, since no order of the default builder mixes the two.

const APP: Record<string, string> = {
  'project.toml': [
    '[_]',
    'schema-version = "0.2"',
    '',
    '[[io.buildpacks.group]]',
    'id = "kiln/nodejs-engine"',
    '',
    '[[io.buildpacks.group]]',
    'id = "kiln/npm-install"',
    '',
    '[[io.buildpacks.group]]',
    'id = "kiln/python"',
    '',
  ].join('\n'),
  'package.json': JSON.stringify({
    name: 'assets',
    version: '1.0.0',
    private: true,
    scripts: { build: 'node build.js' },
    devDependencies: { 'is-number': '^7.0.0' },
  }),
  'package-lock.json': JSON.stringify({
    name: 'assets',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'assets', version: '1.0.0', devDependencies: { 'is-number': '^7.0.0' } },
      'node_modules/is-number': {
        version: '7.0.0',
        integrity:
          'sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==',
        dev: true,
        license: 'MIT',
        engines: { node: '>=0.12.0' },
      },
    },
  }),
  'build.js':
    "require('fs').writeFileSync('asset.txt', 'asset from node ' + (require('is-number')(7) ? 'ok' : 'no'));\n",
  'requirements.txt': 'colorword==0.2\n',
  'app.py': [
    'import os',
    'from http.server import BaseHTTPRequestHandler, HTTPServer',
    '',
    'import colorword',
    '',
    '',
    'class H(BaseHTTPRequestHandler):',
    '    def do_GET(self):',
    '        with open("asset.txt") as f:',
    '            body = f"{f.read()}, {colorword.WORD} from python\\n".encode()',
    '        self.send_response(200)',
    '        self.send_header("Content-Length", str(len(body)))',
    '        self.end_headers()',
    '        self.wfile.write(body)',
    '',
    '',
    'HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()',
    '',
  ].join('\n'),
};

describe('a Node.js + Python project with an explicit group in project.toml', () => {
  let podman: Podman;
  let store: string;
  let index: PypiIndex;
  let dir: string;
  before(async () => {
    ({ podman, store } = await podmanOnKilnStore());
    index = await startPypiIndex([
      { name: 'colorword', version: '0.2', files: { 'colorword.py': 'WORD = "blue"\n' } },
    ]);
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-mixed-'));
    for (const [name, text] of Object.entries(APP)) await writeFile(path.join(dir, name), text);
  });
  after(async () => {
    await index?.close();
    await podman?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  test('Node.js builds the assets, Python serves them', async () => {
    const image = 'kiln-e2e-mixed-group';
    const res = await kilnOk([
      'build',
      image,
      '--path',
      dir,
      '--env',
      `PIP_INDEX_URL=${index.url}`,
      '--allow-host',
      `127.0.0.1:${index.port}`,
    ]);
    assert.match(
      res.stdout + res.stderr,
      /kiln\/nodejs-engine\s+0\.1\.0\n\s*kiln\/npm-install\s+0\.1\.0\n\s*kiln\/python\s+0\.1\.0/,
    );
    assert.equal(
      await serveAndGet(podman, store, image, await freePort()),
      'asset from node ok, blue from python\n',
    );
  });
});
