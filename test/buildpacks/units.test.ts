import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { splitCommand } from '../../buildpacks/_shared/command.ts';
import { proxyFor } from '../../buildpacks/_shared/http.ts';
import { npmRegistry, parseNpmrc } from '../../buildpacks/_shared/npm-registry.ts';
import { cycloneDx, integrityHex, npmPurl, spdx, syft } from '../../buildpacks/_shared/sbom.ts';
import { startCommand } from '../../buildpacks/node-start/src/start.ts';
import { mayBuildNativeAddons } from '../../buildpacks/nodejs-engine/src/native-addons.ts';
import { quickForm, quickPinned, quickResolve } from '../../buildpacks/nodejs-engine/src/quick-version.ts';
import { normalizeRange } from '../../buildpacks/nodejs-engine/src/request.ts';
import { readVersionSources } from '../../buildpacks/nodejs-engine/src/sources.ts';
import { defaultVersion, newestForNode, resolveVersion } from '../../buildpacks/nodejs-engine/src/version.ts';
import { anchorAppLinks } from '../../buildpacks/npm-install/src/app-links.ts';
import { lockDigest } from '../../buildpacks/npm-install/src/lock-digest.ts';
import { installedPackages } from '../../buildpacks/npm-install/src/sbom.ts';
import { parseProcfile, runsNode, toProcesses } from '../../buildpacks/procfile/src/procfile.ts';
import { foreignProgram } from '../../buildpacks/procfile/src/program-arch.ts';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'kiln-bp-units-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('splitCommand()', () => {
  test('splits plain commands into argv, honouring quotes and escapes', () => {
    assert.deepEqual(splitCommand('node server.js'), ['node', 'server.js']);
    assert.deepEqual(splitCommand('  ./hello-server  --port 8080 '), ['./hello-server', '--port', '8080']);
    assert.deepEqual(splitCommand(`node -e 'console.log(1)'`), ['node', '-e', 'console.log(1)']);
    assert.deepEqual(splitCommand('echo "a b" c\\ d'), ['echo', 'a b', 'c d']);
    assert.deepEqual(splitCommand('node --title=web app.js'), ['node', '--title=web', 'app.js']);
  });
  test('returns undefined for shell syntax that needs a shell', () => {
    for (const line of [
      'node a.js && node b.js',
      'node a.js | tee log',
      'node a.js > out',
      'node $MAIN',
      'PORT=3000 node a.js',
      'node "$HOME/a.js"',
      'node *.js',
      'cd x; node a.js',
      'node `which x`',
      "node 'unterminated",
    ]) {
      assert.equal(splitCommand(line), undefined, line);
    }
  });
});

describe('Procfile', () => {
  test('parseProcfile() reads types and commands; web is the default', () => {
    const entries = parseProcfile('# comment\nworker: node worker.js\n\nweb: node server.js\n');
    assert.deepEqual(entries, [
      { type: 'worker', line: 'node worker.js' },
      { type: 'web', line: 'node server.js' },
    ]);
    const { processes, shellTypes } = toProcesses(entries);
    assert.deepEqual(processes, [
      { type: 'worker', command: ['node', 'worker.js'], default: false },
      { type: 'web', command: ['node', 'server.js'], default: true },
    ]);
    assert.deepEqual(shellTypes, []);
  });
  test('the first process is the default without web; shell syntax runs through /bin/sh -c', () => {
    const { processes, shellTypes } = toProcesses(parseProcfile('job: ./run.sh && echo done\n'));
    assert.deepEqual(processes, [
      { type: 'job', command: ['/bin/sh', '-c', './run.sh && echo done'], default: true },
    ]);
    assert.deepEqual(shellTypes, ['job']);
  });
  test('bad lines and duplicate types are errors naming the line', () => {
    assert.throws(() => parseProcfile('web node x'), /cannot read line "web node x"/);
    assert.throws(() => parseProcfile('web: a\nweb: b'), /"web" is declared twice/);
  });
});

describe('Node.js versions', () => {
  const versions = ['18.20.4', '20.19.0', '21.7.3', '22.1.0', '22.23.3', '24.21.0', '25.9.0', '26.0.0-rc.1'];
  test('normalizeRange() reads nvm-style values', () => {
    assert.equal(normalizeRange('v20.1.0\n'), '20.1.0');
    assert.equal(normalizeRange('lts/*'), undefined);
    assert.equal(normalizeRange('lts/iron'), '20');
    assert.equal(normalizeRange('node'), '*');
    assert.equal(normalizeRange('>=18 <23'), '>=18 <23');
  });
  test('resolveVersion() picks the newest stable match; default is the newest even major', () => {
    assert.equal(resolveVersion(versions, { range: '22.x', source: 't' }), '22.23.3');
    assert.equal(resolveVersion(versions, { range: '^20 || ^22.0.0', source: 't' }), '22.23.3');
    assert.equal(resolveVersion(versions, { range: '*', source: 't' }), '25.9.0');
    assert.equal(resolveVersion(versions, { range: undefined, source: 't' }), '24.21.0');
    assert.equal(defaultVersion(versions), '24.21.0');
    assert.equal(resolveVersion(versions, { range: '^99', source: 't' }), undefined);
    assert.throws(
      () => resolveVersion(versions, { range: 'not a range!', source: 'package.json engines.node' }),
      /package.json engines.node: "not a range!" is not a valid semver range/,
    );
  });
  test('quickResolve() answers plain requests exactly as resolveVersion() does, and leaves the rest to it', () => {
    const keys = [...versions, '0.12.18', '22.10.0', '22.9.9', '23.0.0-nightly.1', '24.0.0-rc.2', '20.20.1'];
    for (const range of [
      undefined,
      '22',
      '22.x',
      '22.X',
      '22.*',
      '20',
      '19',
      '0',
      '22.10.0',
      '22.1.0',
      '22.4.4',
    ]) {
      const request = { range, source: 't' };
      assert.ok(quickForm(request), String(range));
      assert.deepEqual(
        quickResolve(keys, request),
        { version: resolveVersion(keys, request) },
        String(range),
      );
    }
    assert.equal(quickResolve(keys, { range: '22.x', source: 't' })?.version, '22.23.3');
    assert.equal(quickPinned({ range: '22.1.0', source: 't' }), '22.1.0');
    assert.equal(quickPinned({ range: '22', source: 't' }), undefined);
    for (const range of ['^22.1.0', '>=20', '22.x.x', '*', '022', '=22.1.0', '20 || 22']) {
      assert.ok(!quickForm({ range, source: 't' }), range);
      assert.equal(quickResolve(keys, { range, source: 't' }), undefined, range);
    }
    // Keys semver reads differently from plain releases (a build suffix, a v prefix): semver decides.
    assert.equal(quickResolve([...keys, '22.99.0+build'], { range: '22', source: 't' }), undefined);
    assert.equal(quickResolve([...keys, 'v22.99.0'], { range: undefined, source: 't' }), undefined);
  });
  test('newestForNode() respects engines.node of npm releases', () => {
    const npm = [
      { version: '10.9.2', engines: { node: '^18.17.0 || >=20.5.0' } },
      { version: '11.6.0', engines: { node: '^20.17.0 || >=22.9.0' } },
      { version: '12.0.0-pre.1', engines: { node: '>=22' } },
    ];
    assert.equal(newestForNode(npm, '18.20.4'), '10.9.2');
    assert.equal(newestForNode(npm, '22.23.3'), '11.6.0');
  });
});

describe('SBOM documents', () => {
  const components = [
    {
      name: '@types/node',
      version: '24.1.0',
      purl: npmPurl('@types/node', '24.1.0'),
      type: 'library' as const,
      ecosystem: 'npm',
      license: 'MIT',
      sha512: 'ab',
    },
    {
      name: 'x',
      version: '1.0.0',
      purl: npmPurl('x', '1.0.0'),
      type: 'library' as const,
      ecosystem: 'npm',
      license: 'SEE LICENSE IN LICENSE',
    },
  ];
  const tool = { name: 'kiln/test', version: '0.1.0' };
  test('npmPurl() encodes scopes', () => {
    assert.equal(npmPurl('@types/node', '1.0.0'), 'pkg:npm/%40types/node@1.0.0');
    assert.equal(integrityHex('sha512-qw=='), 'ab');
  });
  test('CycloneDX 1.6, SPDX 2.3 and Syft documents list every component, deterministically', () => {
    const cdx = cycloneDx(components, tool) as {
      specVersion: string;
      components: { purl: string; licenses?: unknown }[];
    };
    assert.equal(cdx.specVersion, '1.6');
    assert.deepEqual(
      cdx.components.map((c) => c.purl),
      ['pkg:npm/%40types/node@24.1.0', 'pkg:npm/x@1.0.0'],
    );
    assert.equal(
      cdx.components[1]!.licenses,
      undefined,
      'free-text licences are not passed off as SPDX expressions',
    );
    assert.deepEqual(cycloneDx([...components].reverse(), tool), cdx);
    const doc = spdx(components, tool, {}, 'kiln/test') as {
      spdxVersion: string;
      creationInfo: { created: string };
      packages: { licenseDeclared: string; externalRefs: { referenceLocator: string }[] }[];
    };
    assert.equal(doc.spdxVersion, 'SPDX-2.3');
    assert.equal(doc.creationInfo.created, '1980-01-01T00:00:01Z');
    assert.equal(doc.packages[0]!.externalRefs[0]!.referenceLocator, 'pkg:npm/%40types/node@24.1.0');
    assert.equal(doc.packages[1]!.licenseDeclared, 'NOASSERTION');
    assert.equal(
      (spdx(components, tool, { SOURCE_DATE_EPOCH: '0' }, 'n') as { creationInfo: { created: string } })
        .creationInfo.created,
      '1970-01-01T00:00:00Z',
    );
    const s = syft(components, tool) as {
      artifacts: { type: string; purl: string }[];
      schema: { version: string };
    };
    assert.equal(s.artifacts.length, 2);
    assert.equal(s.artifacts[0]!.type, 'npm');
  });
  test('installedPackages() lists the installed tree without dev dependencies', async () => {
    const nm = path.join(tmp, 'nm', 'node_modules');
    await mkdir(nm, { recursive: true });
    await writeFile(
      path.join(nm, '.package-lock.json'),
      JSON.stringify({
        packages: {
          '': { name: 'app' },
          'node_modules/express': { version: '4.21.2', license: 'MIT', integrity: 'sha512-qw==' },
          'node_modules/express/node_modules/debug': { version: '2.6.9' },
          'node_modules/is-number': { version: '7.0.0', dev: true },
          'node_modules/alias': { name: 'real-name', version: '1.0.0' },
          'packages/local': { version: '1.0.0' },
        },
      }),
    );
    const found = await installedPackages(nm, undefined);
    assert.deepEqual(
      found.map((c) => c.purl),
      ['pkg:npm/express@4.21.2', 'pkg:npm/debug@2.6.9', 'pkg:npm/real-name@1.0.0'],
    );
    assert.equal(found[0]!.sha512, 'ab');
  });
});

describe('npm registry configuration', () => {
  test('npm_config_registry wins; a binding of type npmrc supplies the registry and its token', async () => {
    const platform = path.join(tmp, 'platform');
    const binding = path.join(platform, 'bindings', 'my-npmrc');
    await mkdir(binding, { recursive: true });
    await writeFile(path.join(binding, 'type'), 'npmrc\n');
    await writeFile(
      path.join(binding, '.npmrc'),
      'registry=https://npm.example.test/repo\n//npm.example.test/repo/:_authToken=s3cret\n',
    );
    assert.deepEqual(await npmRegistry({}, platform), {
      url: 'https://npm.example.test/repo/',
      token: 's3cret',
      npmrc: path.join(binding, '.npmrc'),
    });
    const env = await npmRegistry({ npm_config_registry: 'https://other.example.test' }, platform);
    assert.equal(env?.url, 'https://other.example.test/');
    assert.equal(env?.token, undefined, 'a token is only sent to the registry it was issued for');
    assert.equal(await npmRegistry({}, path.join(tmp, 'nowhere')), undefined);
    assert.equal(parseNpmrc('# c\n a = b \n').get('a'), 'b');
  });
  test('proxyFor() honours HTTPS_PROXY and NO_PROXY (either case)', () => {
    const url = new URL('https://registry.example.test/x');
    assert.equal(proxyFor(url, {})?.href, undefined);
    assert.equal(proxyFor(url, { HTTPS_PROXY: 'http://proxy:3128' })?.host, 'proxy:3128');
    assert.equal(proxyFor(url, { https_proxy: 'proxy:3128' })?.host, 'proxy:3128');
    assert.equal(proxyFor(url, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: '.example.test' }), undefined);
    assert.equal(proxyFor(url, { HTTPS_PROXY: 'http://proxy:3128', no_proxy: 'other.test,*' }), undefined);
  });
});

describe('npm registry from the app', () => {
  test("the app's own .npmrc registry is used when the platform passes none", async () => {
    const app = path.join(tmp, 'app-npmrc');
    await mkdir(app, { recursive: true });
    await writeFile(path.join(app, '.npmrc'), 'registry = https://mirror.example.test/npm\n');
    assert.equal(
      (await npmRegistry({}, path.join(tmp, 'nowhere'), app))?.url,
      'https://mirror.example.test/npm/',
    );
    assert.equal(
      (await npmRegistry({ npm_config_registry: 'https://env.example.test/' }, tmp, app))?.url,
      'https://env.example.test/',
    );
  });
});

describe('Node.js version sources', () => {
  test('readVersionSources(): BP_NODE_VERSION, then engines.node, then .nvmrc, then .node-version', async () => {
    const app = path.join(tmp, 'version-sources');
    await mkdir(app, { recursive: true });
    assert.deepEqual(await readVersionSources(app, {}), { isNodeApp: false, requests: [] });
    await writeFile(path.join(app, '.node-version'), '20.19.0\n');
    assert.deepEqual(await readVersionSources(app, {}), {
      isNodeApp: true,
      requests: [{ range: '20.19.0', source: '.node-version' }],
    });
    await writeFile(path.join(app, '.nvmrc'), 'lts/iron\n');
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ engines: { node: '22.x' } }));
    const all = await readVersionSources(app, { BP_NODE_VERSION: '24' });
    assert.deepEqual(
      all.requests.map((r) => [r.source, r.range]),
      [
        ['BP_NODE_VERSION', '24'],
        ['package.json engines.node', '22.x'],
        ['.nvmrc', '20'],
        ['.node-version', '20.19.0'],
      ],
    );
  });
});

describe('node-start', () => {
  test('startCommand(): the start script, else main (also when start needs a shell), else an entry file', async () => {
    const app = path.join(tmp, 'start-command');
    await mkdir(app, { recursive: true });
    const pkg = (p: object) => writeFile(path.join(app, 'package.json'), JSON.stringify(p));
    assert.equal(await startCommand(app), undefined);
    await pkg({ scripts: { start: 'node server.js --port 1' }, main: 'lib/main.js' });
    assert.deepEqual(await startCommand(app), {
      command: ['node', 'server.js', '--port', '1'],
      source: 'package.json scripts.start',
    });
    await pkg({ scripts: { start: 'cd lib && node main.js' }, main: 'lib/main.js' });
    const fallback = await startCommand(app);
    assert.deepEqual(fallback?.command, ['node', 'lib/main.js']);
    assert.equal(fallback?.source, 'package.json main');
    assert.match(String(fallback?.warning), /needs a shell/);
    await pkg({});
    await writeFile(path.join(app, 'index.js'), '');
    assert.deepEqual(await startCommand(app), { command: ['node', 'index.js'], source: 'index.js' });
  });
});

describe('npm-install lock digest', () => {
  test('lockDigest() is the sha256 of the lock file, remembered next to its bytes; other bytes or a damaged memo are hashed again', async () => {
    const memo = path.join(tmp, 'lock-memo', 'kiln-lock-digest');
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const lock = Buffer.from('{"lockfileVersion":3}\n');
    assert.equal(await lockDigest(memo, lock), sha(lock));
    assert.equal((await readFile(memo, 'latin1')).slice(0, 72), `sha256:${sha(lock)}\n`);
    assert.equal(await lockDigest(memo, lock), sha(lock));
    const changed = Buffer.from('{"lockfileVersion":3, "x":1}\n');
    assert.equal(await lockDigest(memo, changed), sha(changed));
    // A memo claiming another digest for these bytes is not believed blindly: its header is checked.
    await writeFile(memo, Buffer.concat([Buffer.from(`sha256:${'z'.repeat(64)}\n`), changed]));
    assert.equal(await lockDigest(memo, changed), sha(changed));
  });
});

describe('procfile: which processes start Node.js', () => {
  test('node as the program (also after exec/env/VAR=) or as a command word of a shell line', () => {
    const yes = [
      'node web.js',
      'exec node web.js',
      'env NODE_ENV=production node web.js',
      '/usr/bin/node x.js',
      'cd app && node web.js',
    ];
    const no = ['./server', 'npm start', 'python app.py', 'nodemon web.js', 'echo node'];
    for (const line of yes) assert.ok(runsNode({ type: 'web', line }), line);
    for (const line of no) assert.ok(!runsNode({ type: 'web', line }), line);
  });
});

describe('procfile: a prebuilt program of another architecture than the image', () => {
  test('an ELF file in the app is checked against CNB_TARGET_ARCH; links, scripts and PATH programs are not', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kiln-procfile-arch-'));
    try {
      const elf = (machine: number) => {
        const b = Buffer.alloc(64);
        b.write('\x7fELF', 0, 'latin1');
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b.writeUInt16LE(machine, 18);
        return b;
      };
      await mkdir(path.join(dir, 'bin'));
      await writeFile(path.join(dir, 'hello-server'), elf(62));
      await writeFile(path.join(dir, 'bin', 'arm-server'), elf(183));
      await writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\nexec true\n');
      await symlink(path.join(dir, 'hello-server'), path.join(dir, 'link'));
      assert.equal(await foreignProgram(dir, './hello-server', 'arm64'), 'amd64');
      assert.equal(await foreignProgram(dir, './hello-server', 'amd64'), undefined);
      assert.equal(await foreignProgram(dir, 'bin/arm-server', 'amd64'), 'arm64');
      assert.equal(await foreignProgram(dir, 'bin/arm-server', 'arm64'), undefined);
      assert.equal(
        await foreignProgram(dir, './hello-server', undefined),
        undefined,
        'no target: not checked',
      );
      assert.equal(await foreignProgram(dir, './link', 'arm64'), undefined, 'a link is not followed');
      assert.equal(await foreignProgram(dir, './run.sh', 'arm64'), undefined, 'not ELF');
      assert.equal(await foreignProgram(dir, 'hello-server', 'arm64'), undefined, 'a PATH lookup');
      assert.equal(await foreignProgram(dir, `${dir}/hello-server`, 'arm64'), undefined, 'absolute');
      assert.equal(await foreignProgram(dir, '../x/hello-server', 'arm64'), undefined, 'outside the app');
      assert.equal(await foreignProgram(dir, './missing', 'arm64'), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('mayBuildNativeAddons()', () => {
  const lock = (packages: Record<string, unknown>, lockfileVersion = 3) =>
    JSON.stringify({ name: 'a', lockfileVersion, requires: true, packages });
  const cases: [string, Record<string, string>, boolean][] = [
    ['no lockfile', { 'package.json': '{"name":"a"}' }, true],
    [
      'a v3 lockfile without install scripts',
      {
        'package.json': '{"name":"a"}',
        'package-lock.json': lock({ '': { name: 'a' }, 'node_modules/x': { version: '1.0.0' } }),
      },
      false,
    ],
    [
      'a package with an install script (binding.gyp counts)',
      {
        'package-lock.json': lock({
          '': {},
          'node_modules/x': { version: '1.0.0' },
          'node_modules/y': { hasInstallScript: true },
        }),
      },
      true,
    ],
    [
      'a linked package (npm does not look into it)',
      { 'package-lock.json': lock({ '': {}, 'node_modules/l': { resolved: 'l', link: true } }) },
      true,
    ],
    [
      'a package from a file: tarball (not normalized by a registry)',
      {
        'package-lock.json': lock({
          '': {},
          'node_modules/t': { version: '1.0.0', resolved: 'file:t-1.0.0.tgz' },
        }),
      },
      true,
    ],
    [
      'a package from git',
      {
        'package-lock.json': lock({
          '': {},
          'node_modules/g': { resolved: 'git+ssh://git@example.invalid/g.git#0123' },
        }),
      },
      true,
    ],
    [
      'registry packages with a resolved URL',
      {
        'package-lock.json': lock({
          '': {},
          'node_modules/r': { version: '1.0.0', resolved: 'https://registry.example/r/-/r-1.0.0.tgz' },
        }),
      },
      false,
    ],
    [
      'a v1 lockfile (no hasInstallScript)',
      { 'package-lock.json': JSON.stringify({ lockfileVersion: 1, dependencies: {} }) },
      true,
    ],
    ['a lockfile that is not JSON', { 'package-lock.json': '{' }, true],
    [
      "the app's own install script",
      { 'package.json': '{"scripts":{"postinstall":"x"}}', 'package-lock.json': lock({ '': {} }) },
      true,
    ],
    ["the app's own binding.gyp", { 'binding.gyp': '{}', 'package-lock.json': lock({ '': {} }) }, true],
    [
      'npm-shrinkwrap.json first',
      {
        'npm-shrinkwrap.json': lock({ '': {} }),
        'package-lock.json': lock({ '': {}, 'node_modules/y': { hasInstallScript: true } }),
      },
      false,
    ],
  ];
  for (const [what, files, want] of cases)
    test(`${what}: ${want ? 'headers' : 'no headers'}`, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'kiln-native-'));
      try {
        for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
        assert.equal(await mayBuildNativeAddons(dir), want);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
});

describe('anchorAppLinks()', () => {
  test('links to packages inside the app keep pointing there once node_modules moves into a layer', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'kiln-links-'));
    try {
      const app = path.join(root, 'workspace');
      const nm = path.join(app, 'node_modules');
      await mkdir(path.join(nm, '@s'), { recursive: true });
      await mkdir(path.join(nm, 'real', 'sub'), { recursive: true });
      await mkdir(path.join(app, 'lib'), { recursive: true });
      await mkdir(path.join(app, 'packages', 'y'), { recursive: true });
      await symlink('../lib', path.join(nm, 'greet')); // "greet": "file:lib"
      await symlink('../../packages/y', path.join(nm, '@s', 'y')); // a scoped workspace
      await symlink('real/sub', path.join(nm, 'inner')); // into node_modules: stays relative
      await symlink('/opt/elsewhere', path.join(nm, 'abs')); // absolute: left alone
      await symlink('../../../etc', path.join(nm, 'out')); // out of the app: left alone
      const layer = path.join(root, 'layers', 'modules', 'node_modules');
      await mkdir(path.dirname(layer), { recursive: true });
      await rename(nm, layer);
      assert.equal(await anchorAppLinks(nm, layer, app), 2);
      assert.equal(await readlink(path.join(layer, 'greet')), path.join(app, 'lib'));
      assert.equal(await readlink(path.join(layer, '@s', 'y')), path.join(app, 'packages', 'y'));
      assert.equal(await readlink(path.join(layer, 'inner')), 'real/sub');
      assert.equal(await readlink(path.join(layer, 'abs')), '/opt/elsewhere');
      assert.equal(await readlink(path.join(layer, 'out')), '../../../etc');
      // Again (a reused layer): nothing left to do.
      assert.equal(await anchorAppLinks(nm, layer, app), 0);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
