// Conformance across two implementations of the launch environment: layers written by real
// buildpacks through kiln's build phase, then (a) kiln's own reading of them as ordered env ops
// (src/cnb/launch-env.ts) and (b) the C launcher (src/launcher) started on those layers. Both
// must give the same environment, the one the reference lifecycle's launcher would build.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApiVersion } from '../../src/cnb/api.ts';
import { escapeId } from '../../src/cnb/ids.ts';
import { applyEnvOp, launchEnvOps } from '../../src/cnb/launch-env.ts';
import { readLayerToml } from '../../src/cnb/layer-toml.ts';
import { loadLauncher, writeLaunchConfig } from '../../src/launcher/index.ts';
import { type Fixture, makeFixture, parseEnvDump } from './harness.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('launch environment: kiln ops and the C launcher agree', () => {
  let f: Fixture;
  let launcher: string;
  before(async () => {
    f = await makeFixture();
    await promisify(execFile)('bash', [join(root, 'scripts/build.d/launcher.sh')], {
      env: { ...process.env, KILN_LAUNCHER_OUT: join(f.dir, 'launcher') },
    });
    launcher = (await loadLauncher(join(f.dir, 'launcher'))).path;
  });
  after(() => f.cleanup());

  test('env files of every suffix, with and without .delim, across buildpacks, for process web', async () => {
    await f.install('env-writer', { id: 'w/one' });
    const layer = (name: string, files: Record<string, string>) =>
      [
        `mkdir -p "$1/${name}/bin" "$1/${name}/lib" "$1/${name}/env.launch/web"`,
        `printf '[types]\\nlaunch = true\\n' > "$1/${name}.toml"`,
        ...Object.entries(files).map(
          ([p, v]) => `mkdir -p "$(dirname "$1/${name}/${p}")"; printf '%s' '${v}' > "$1/${name}/${p}"`,
        ),
      ].join('\n');
    await f.inline({
      id: 'w/two',
      api: '0.10',
      build: [
        layer('a', {
          'env/OVR': 'two-a',
          'env/APPD.append': 'two',
          'env/APPD.delim': '|',
          'env.launch/PREPN.prepend': 'launch-',
          'env.launch/FRESH.prepend': 'nothing-before',
          'env.launch/FRESH.delim': ':',
          'env.launch/web/WEBONLY': 'web',
          'env.launch/web/WEBDEF.default': 'web-default',
          'env.launch/web/DEF.default': 'not-used',
          'env.launch/other/OTHERONLY': 'other',
        }),
        layer('b', { 'env/ORDERED.default': 'b-default', 'env.launch/ORDERED.override': 'b-launch' }),
      ].join('\n'),
    });
    const md = await f.detectAndBuild(['w/one', 'w/two']);
    await writeLaunchConfig(f.layers, {
      buildpacks: md.buildpacks.map((b) => ({ id: b.id, api: b.api })),
      processes: [{ type: 'web', command: ['/usr/bin/env', '-0'], args: [], buildpackId: 'w/two' }],
      defaultProcessType: 'web',
    });

    // (a) kiln's ops over the launch layers, applied to the container env.
    const bps = [];
    for (const b of md.buildpacks) {
      const dir = join(f.layers, escapeId(b.id));
      const layers = [];
      for (const name of (await readdir(dir, { withFileTypes: true }))
        .filter((e) => e.isDirectory())
        .map((e) => e.name)
        .sort()) {
        assert.ok((await readLayerToml(join(dir, `${name}.toml`))).types.launch, `${name} is a launch layer`);
        layers.push({ hostDir: join(dir, name), imageDir: join(dir, name) });
      }
      bps.push({ id: b.id, api: ApiVersion.parse(b.api), layers });
    }
    const ops = await launchEnvOps(bps, 'web');
    const expected = new Map([
      ['PATH', '/usr/bin:/bin'],
      ['DEF', ''],
    ]);
    for (const op of ops) applyEnvOp(expected, op);

    // (b) the launcher itself.
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(launcher, [], {
        env: {
          PATH: '/usr/bin:/bin',
          DEF: '',
          CNB_LAYERS_DIR: f.layers,
          CNB_APP_DIR: f.app,
          CNB_PLATFORM_API: '0.15',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve(stdout) : reject(new Error(`launcher exited ${code}: ${stderr}`)),
      );
    });
    const actual = parseEnvDump(out);

    for (const name of new Set(ops.map((o) => o.name))) {
      assert.equal(actual.get(name), expected.get(name), `${name}`);
    }
    // Spot checks of the semantics both must share.
    assert.equal(expected.get('OVR'), 'two-a');
    assert.equal(expected.get('APPD'), 'first|two');
    assert.equal(expected.get('PREPN'), 'launch-base');
    assert.equal(expected.get('FRESH'), 'nothing-before');
    assert.equal(expected.get('WEBONLY'), 'web');
    assert.equal(expected.get('WEBDEF'), 'web-default');
    assert.equal(expected.get('DEF'), 'layer-default');
    assert.equal(expected.get('ORDERED'), 'b-launch');
    assert.equal(expected.get('NL'), 'with-newline\n');
    assert.equal(expected.get('LAUNCHONLY'), 'x');
    assert.equal(expected.get('NOTBUILD'), 'y');
    assert.equal(actual.has('OTHERONLY'), false);
    assert.equal(actual.has('CNB_LAYERS_DIR'), false);
    assert.match(
      expected.get('PATH')!,
      new RegExp(`^${join(f.layers, 'w_two', 'b', 'bin')}:${join(f.layers, 'w_two', 'a', 'bin')}:`),
    );
  });
});
