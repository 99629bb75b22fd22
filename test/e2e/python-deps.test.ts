import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Podman } from '../helpers/podman.ts';
import { type Dist, type PypiIndex, startPypiIndex } from '../helpers/pypi-index.ts';
import { assertRunUserNoShell, imageFiles, serveAndGet } from './lang-harness.ts';
import { copySample, freePort, kiln, kilnOk, layerShas, podmanOnKilnStore } from './samples-harness.ts';

// kiln/python with dependencies through `kiln build`: requirements.txt installed by Debian's pip
// (from the stack's archive) into a venv launch layer, from a PEP 503 index this test runs on
// 127.0.0.1 serving wheels it builds. The venv layer is kept while the requirements are the same
// and rebuilt when they change; the index also comes from a `pip` binding's pip.conf.

// Stands in for humanize 4.9.0 (the sample's dependency): same name and version, the test's code.
const HUMANIZE: Dist = {
  name: 'humanize',
  version: '4.9.0',
  files: {
    'humanize/__init__.py': [
      'def naturalsize(value):',
      '    for unit in ("Bytes", "kB", "MB", "GB"):',
      '        if value < 1000 or unit == "GB":',
      '            return f"{value:.1f} {unit}" if unit != "Bytes" else f"{value} Bytes"',
      '        value /= 1000',
      '',
    ].join('\n'),
  },
};
const COLORWORD: Dist = { name: 'colorword', version: '0.2', files: { 'colorword.py': 'WORD = "blue"\n' } };

// A build backend for pyproject.toml projects: Debian's setuptools and wheel as the wheels they
// ship (python3-setuptools-whl, python3-wheel-whl), served by the index like any other project.
const BACKEND_WHEELS = [
  '/usr/share/python-wheels/setuptools-66.1.1-py3-none-any.whl',
  '/usr/share/python-wheels/wheel-0.38.4-py3-none-any.whl',
];

const IMAGE = 'kiln-e2e-python-deps';
const ANSWER = 'Hello from kiln: python-app (123.5 MB)\n';

let podman: Podman;
let store: string;
let index: PypiIndex;
let sample: { dir: string; cleanup: () => Promise<void> };
let scratch: string;

before(async () => {
  ({ podman, store } = await podmanOnKilnStore());
  index = await startPypiIndex(
    [HUMANIZE, COLORWORD],
    BACKEND_WHEELS.filter((w) => existsSync(w)),
  );
  sample = await copySample('python-app');
  scratch = await mkdtemp(path.join(tmpdir(), 'kiln-e2e-pydeps-'));
});
after(async () => {
  await index?.close();
  await podman?.cleanup();
  await sample?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

const withIndex = (image: string, dir: string) => [
  'build',
  image,
  '--path',
  dir,
  '--env',
  `PIP_INDEX_URL=${index.url}`,
  '--allow-host',
  `127.0.0.1:${index.port}`,
];

describe('kiln/python with requirements.txt', () => {
  test('the python-app sample: its dependency in a venv layer, pkg:pypi in the SBOM, no pip in the image', async () => {
    const res = await kilnOk(withIndex(IMAGE, sample.dir));
    assert.match(res.stdout + res.stderr, /pip install -r requirements\.txt \(Debian pip /);
    assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), ANSWER);
    await assertRunUserNoShell(podman, store, IMAGE);
    const files = await imageFiles(IMAGE);
    const paths = [...files.keys()];
    assert.ok(
      paths.some((p) =>
        /^layers\/kiln_python\/venv\/lib\/python3\.\d+\/site-packages\/humanize\/__init__\.py$/.test(p),
      ),
    );
    assert.deepEqual(
      paths.filter((p) => /(^|\/)pip(\/|$)|kiln_python\/pip/.test(p)),
      [],
      "Debian's pip is a build layer only",
    );
    const sbom = files.get('layers/sbom/launch/kiln_python/venv/sbom.cdx.json') ?? '';
    assert.match(sbom, /"purl": ?"pkg:pypi\/humanize@4\.9\.0"/);
  });

  test('the venv layer is reused while the requirements are unchanged and rebuilt when they change', async () => {
    const before = (await layerShas(IMAGE)).layers.get('kiln/python:venv');
    assert.ok(before);
    index.requests.length = 0;
    const same = await kilnOk(withIndex(IMAGE, sample.dir));
    assert.match(same.stdout + same.stderr, /reusing the venv layer \(requirements unchanged\)/);
    assert.equal((await layerShas(IMAGE)).layers.get('kiln/python:venv'), before);
    assert.deepEqual(index.requests, [], 'no request to the index');

    await writeFile(path.join(sample.dir, 'requirements.txt'), 'humanize==4.9.0\ncolorword==0.2\n');
    const changed = await kilnOk(withIndex(IMAGE, sample.dir));
    assert.match(changed.stdout + changed.stderr, /Successfully installed colorword-0\.2 humanize-4\.9\.0/);
    assert.notEqual((await layerShas(IMAGE)).layers.get('kiln/python:venv'), before);
    assert.equal(await serveAndGet(podman, store, IMAGE, await freePort()), ANSWER);
  });

  test('the index from a pip binding (pip.conf), without PIP_INDEX_URL', async () => {
    const binding = path.join(scratch, 'pip-binding');
    await mkdir(binding, { recursive: true });
    await writeFile(path.join(binding, 'type'), 'pip');
    await writeFile(path.join(binding, 'pip.conf'), `[global]\nindex-url = ${index.url}\n`);
    const app = path.join(scratch, 'bound');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'requirements.txt'), 'colorword==0.2\n');
    await writeFile(path.join(app, 'main.py'), 'import colorword\nprint(colorword.WORD)\n');
    index.requests.length = 0;
    await kilnOk([
      'build',
      `${IMAGE}-binding`,
      '--path',
      app,
      '--binding',
      `pip=${binding}`,
      '--allow-host',
      `127.0.0.1:${index.port}`,
    ]);
    assert.ok(index.requests.includes('/files/colorword-0.2-py3-none-any.whl'), index.requests.join(' '));
    const run = await podman.run(`oci:${store}:docker.io/library/${IMAGE}-binding:latest`);
    assert.equal(run.stdout, 'blue\n');
  });

  test("an unknown package fails with pip's error and the failed step", async () => {
    const app = path.join(scratch, 'unknown');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, 'requirements.txt'), 'no-such-dist==1.0\n');
    await writeFile(path.join(app, 'app.py'), 'print(1)\n');
    const res = await kiln(withIndex(`${IMAGE}-unknown`, app));
    assert.notEqual(res.code, 0);
    const out = res.stdout + res.stderr;
    assert.match(out, /No matching distribution found for no-such-dist==1\.0/);
    assert.match(
      out,
      /kiln\/python failed at step "pip install -r requirements\.txt": see pip's error above/,
    );
  });
});

describe('kiln/python with pyproject.toml', {
  skip: BACKEND_WHEELS.every((w) => existsSync(w))
    ? false
    : "Debian's setuptools/wheel wheels missing: run scripts/bootstrap.sh",
}, () => {
  test('a setuptools project: pip builds it with the backend from the index, its console script is the web process', async () => {
    const app = path.join(scratch, 'pyproject');
    await mkdir(path.join(app, 'greeter'), { recursive: true });
    await writeFile(
      path.join(app, 'pyproject.toml'),
      [
        '[build-system]',
        'requires = ["setuptools>=61", "wheel"]',
        'build-backend = "setuptools.build_meta"',
        '',
        '[project]',
        'name = "greeter"',
        'version = "1.2.0"',
        'dependencies = ["colorword==0.2"]',
        '',
        '[project.scripts]',
        'greeter-serve = "greeter:main"',
        '',
      ].join('\n'),
    );
    await writeFile(
      path.join(app, 'greeter/__init__.py'),
      [
        'import os',
        'from http.server import BaseHTTPRequestHandler, HTTPServer',
        '',
        'import colorword',
        '',
        '',
        'class Handler(BaseHTTPRequestHandler):',
        '    def do_GET(self):',
        '        body = f"Hello from greeter ({colorword.WORD})\\n".encode()',
        '        self.send_response(200)',
        '        self.send_header("Content-Length", str(len(body)))',
        '        self.end_headers()',
        '        self.wfile.write(body)',
        '',
        '',
        'def main():',
        '    HTTPServer(("", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()',
        '',
      ].join('\n'),
    );
    await writeFile(path.join(app, 'Procfile'), 'web: greeter-serve\n');
    index.requests.length = 0;
    const image = `${IMAGE}-pyproject`;
    const res = await kilnOk(withIndex(image, app));
    assert.match(res.stdout + res.stderr, /pip install \. \(Debian pip /);
    assert.match(res.stdout + res.stderr, /Successfully installed colorword-0\.2 greeter-1\.2\.0/);
    assert.ok(
      index.requests.includes('/files/setuptools-66.1.1-py3-none-any.whl'),
      `the build backend came from the index: ${index.requests.join(' ')}`,
    );
    assert.equal(await serveAndGet(podman, store, image, await freePort()), 'Hello from greeter (blue)\n');
    await assertRunUserNoShell(podman, store, image);
    const files = await imageFiles(image);
    const paths = [...files.keys()];
    assert.ok(
      paths.some((p) =>
        /^layers\/kiln_python\/venv\/lib\/python3\.\d+\/site-packages\/greeter\/__init__\.py$/.test(p),
      ),
      'the project is installed in the venv',
    );
    assert.ok(files.has('layers/kiln_python/venv/bin/greeter-serve'));
    const sbom = files.get('layers/sbom/launch/kiln_python/venv/sbom.cdx.json') ?? '';
    assert.match(sbom, /"purl": ?"pkg:pypi\/greeter@1\.2\.0"/);
    assert.match(sbom, /"purl": ?"pkg:pypi\/colorword@0\.2"/);
  });
});
