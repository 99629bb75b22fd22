// Conformance: the build phase, one case per rule (CNB Buildpack API 0.10–0.12, Platform 0.15),
// run through the real bubblewrap sandbox as uid 1000.
import assert from 'node:assert/strict';
import { access, chown, lstat, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readMetadataToml } from '../../src/cnb/metadata.ts';
import { build } from '../../src/lifecycle/build.ts';
import { HostExecutor } from '../../src/sandbox/host.ts';
import {
  type Fixture,
  makeFixture,
  parseArgsDump,
  parseEnvDump,
  rejectsWith,
  withFixture,
} from './harness.ts';

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

const probeEnv = async (f: Fixture, id = 'conformance/probe') =>
  parseEnvDump(await f.layerFile(id, 'probe.build.env'));

describe('build: inputs', () => {
  for (const api of ['0.10', '0.11', '0.12']) {
    test(`positional args $1=<layers>/<bp> $2=<platform> $3=<plan>, CNB_* vars, cwd=<app> for Buildpack API ${api}`, () =>
      withFixture(async (f) => {
        const { id } = await f.install('probe', { api, id: `conformance/probe-${api}` });
        await f.detectAndBuild([id]);
        const args = parseArgsDump(await f.layerFile(id, 'probe.build.args'));
        const env = await probeEnv(f, id);
        assert.equal(args.length, 3);
        assert.equal(args[0], `/layers/conformance_probe-${api}`);
        assert.equal(args[1], '/platform');
        assert.match(args[2]!, new RegExp(`^/tmp/kiln-build-[^/]+/conformance_probe-${api}/plan.toml$`));
        assert.equal(env.get('CNB_LAYERS_DIR'), args[0]);
        assert.equal(env.get('CNB_PLATFORM_DIR'), '/platform');
        assert.equal(env.get('CNB_BP_PLAN_PATH'), args[2]);
        assert.equal(env.get('CNB_BUILDPACK_DIR'), `/cnb/buildpacks/conformance_probe-${api}/0.0.1`);
        assert.equal((await f.layerFile(id, 'probe.build.pwd')).trim(), '/workspace');
        assert.equal(env.has('CNB_EXEC_ENV'), api === '0.12');
        assert.equal(env.get('CNB_TARGET_OS'), 'linux');
      }));
  }

  test('Buildpack API 0.7: positional args only, no CNB_PLATFORM_DIR/CNB_BP_PLAN_PATH/CNB_LAYERS_DIR', () =>
    withFixture(async (f) => {
      const { id } = await f.install('probe', { api: '0.7', id: 'conformance/probe-0.7' });
      await f.detectAndBuild([id]);
      const args = parseArgsDump(await f.layerFile(id, 'probe.build.args'));
      const env = await probeEnv(f, id);
      assert.equal(args[0], '/layers/conformance_probe-0.7');
      assert.equal(env.get('CNB_BUILDPACK_DIR'), '/cnb/buildpacks/conformance_probe-0.7/0.0.1');
      for (const k of [
        'CNB_PLATFORM_DIR',
        'CNB_BP_PLAN_PATH',
        'CNB_LAYERS_DIR',
        'CNB_TARGET_OS',
        'CNB_EXEC_ENV',
      ]) {
        assert.equal(env.has(k), false, k);
      }
    }));

  test('a scratch root outside /tmp is still seen by buildpacks under /tmp', () =>
    withFixture(async (f) => {
      const root = join(f.dir, 'scratch');
      await mkdir(root);
      await f.install('probe');
      await f.inline({ id: 'wants', detect: `printf '[[requires]]\\nname = "p"\\n' >> "$2"` });
      await f.inline({
        id: 'gives',
        detect: `printf '[[provides]]\\nname = "p"\\n' >> "$2"`,
        build: 'cat "$3" > "$1/plan.copy"',
      });
      await f.detectAndBuild(['gives', 'wants', 'conformance/probe'], { scratchRoot: root });
      assert.match(
        parseArgsDump(await f.layerFile('conformance/probe', 'probe.build.args'))[2]!,
        /^\/tmp\/kiln-build-/,
      );
      assert.match(await f.layerFile('gives', 'plan.copy'), /name = "p"/);
      assert.deepEqual(await readdir(root), []);
    }));

  test('the app dir is writable during build and the plan scratch dir is removed afterwards', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.detectAndBuild(['conformance/probe']);
      assert.ok(await exists(join(f.app, 'probe-was-here')));
      const plan = parseArgsDump(await f.layerFile('conformance/probe', 'probe.build.args'))[2]!;
      assert.equal(await exists(plan), false);
    }));

  test('CNB_TARGET_* and CNB_EXEC_ENV values follow the run image target and exec env', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.detectAndBuild(['conformance/probe'], {
        execEnv: 'development',
        target: { os: 'linux', arch: 'arm', variant: 'v7', distro: { name: 'ubuntu', version: '24.04' } },
      });
      const env = await probeEnv(f);
      assert.equal(env.get('CNB_TARGET_ARCH'), 'arm');
      assert.equal(env.get('CNB_TARGET_ARCH_VARIANT'), 'v7');
      assert.equal(env.get('CNB_TARGET_DISTRO_NAME'), 'ubuntu');
      assert.equal(env.get('CNB_TARGET_DISTRO_VERSION'), '24.04');
      assert.equal(env.get('CNB_EXEC_ENV'), 'development');
    }));

  test('a buildpack that provided nothing gets an empty Buildpack Plan', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.inline({ id: 'provider', detect: `printf '[[provides]]\\nname = "dep"\\n' >> "$2"` });
      await f.inline({ id: 'wants', detect: `printf '[[requires]]\\nname = "dep"\\n' >> "$2"` });
      await f.detectAndBuild(['provider', 'wants', 'conformance/probe']);
      assert.equal((await f.layerFile('conformance/probe', 'probe.plan')).trim(), 'entries = []');
    }));

  test('a provider sees every require of its entries in its plan', () =>
    withFixture(async (f) => {
      await f.inline({
        id: 'provider',
        detect: `printf '[[provides]]\\nname = "dep"\\n' >> "$2"`,
        build: 'cp "$3" "$1/plan.copy"',
      });
      await f.inline({
        id: 'wants',
        detect: `printf '[[requires]]\\nname = "dep"\\n[requires.metadata]\\nv = "1"\\n[[requires]]\\nname = "dep"\\n' >> "$2"`,
      });
      await f.detectAndBuild(['provider', 'wants']);
      const plan = await f.layerFile('provider', 'plan.copy');
      assert.equal((plan.match(/\[\[entries\]\]/g) ?? []).length, 2);
      assert.match(plan, /name = "dep"\n\n\[entries.metadata\]\nv = "1"/);
    }));

  test('buildpacks never run as root', () =>
    withFixture(async (f) => {
      await f.install('probe');
      const r = await f.detect(['conformance/probe']);
      await rejectsWith(
        build({ ...f.options({ uid: 0, gid: 0 }), group: r.group, plan: r.plan }),
        52,
        /root/,
      );
    }));
});

describe('build: host executor (kiln already inside the build image)', () => {
  test('detect and build run with host paths as sandbox paths', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.install('env-writer');
      const paths = { app: f.app, layers: f.layers, platform: f.platform, buildpacks: f.store.root };
      await f.platformEnv('PROBE_OUT', f.layers);
      const md = await f.detectAndBuild(['conformance/env-writer', 'conformance/probe'], {
        executor: new HostExecutor({ hostUid: process.getuid?.() ?? 0 }),
        rootfs: '/',
        network: 'host',
        sandboxPaths: paths,
      });
      assert.equal(md.buildpacks.length, 2);
      const args = parseArgsDump(await f.layerFile('conformance/probe', 'probe.build.args'));
      assert.equal(args[0], join(f.layers, 'conformance_probe'));
      assert.equal(args[1], f.platform);
      const env = await probeEnv(f);
      assert.equal(
        env.get('PATH'),
        `${join(f.layers, 'conformance_env-writer', 'envl', 'bin')}:/usr/bin:/bin`,
      );
      assert.equal((await f.layerFile('conformance/probe', 'probe.build.pwd')).trim(), f.app);
    }));
});

describe('build: environment', () => {
  test('env files: no suffix and .override set, .default only if empty, raw contents, unknown suffix ignored', () =>
    withFixture(async (f) => {
      await f.install('env-writer');
      await f.install('probe');
      await f.detectAndBuild(['conformance/env-writer', 'conformance/probe']);
      const env = await probeEnv(f);
      assert.equal(env.get('OVR'), 'ovr');
      assert.equal(env.get('OVR2'), 'ovr2');
      assert.equal(env.get('DEF'), 'layer-default');
      assert.equal(env.get('DEFSET'), 'set');
      assert.equal(env.get('NL'), 'with-newline\n');
      assert.equal(env.has('UNKNOWN'), false);
      assert.equal(env.has('LAUNCHONLY'), false);
    }));

  test('.append and .prepend with a .delim use it; without .delim there is no separator', () =>
    withFixture(async (f) => {
      await f.install('env-writer');
      await f.install('probe');
      await f.detectAndBuild(['conformance/env-writer', 'conformance/probe']);
      const env = await probeEnv(f);
      assert.equal(env.get('APPD'), 'first|second');
      assert.equal(env.get('APPN'), 'firstsecond');
      assert.equal(env.get('PREPD'), 'pre::base');
      assert.equal(env.get('PREPN'), 'prebase');
    }));

  test('build layer bin, lib, include and pkgconfig are prepended to the path variables', () =>
    withFixture(async (f) => {
      await f.install('env-writer');
      await f.install('probe');
      await f.detectAndBuild(['conformance/env-writer', 'conformance/probe']);
      const env = await probeEnv(f);
      const l = '/layers/conformance_env-writer/envl';
      assert.equal(env.get('PATH'), `${l}/bin:/usr/bin:/bin`);
      assert.equal(env.get('LD_LIBRARY_PATH'), `${l}/lib`);
      assert.equal(env.get('LIBRARY_PATH'), `${l}/lib`);
      assert.equal(env.get('CPATH'), `${l}/include`);
      assert.equal(env.get('PKG_CONFIG_PATH'), `${l}/pkgconfig`);
    }));

  test('later buildpacks prepend ahead of earlier ones and append after them', () =>
    withFixture(async (f) => {
      await f.install('env-writer', { id: 'w/one' });
      await f.install('env-writer', { id: 'w/two' });
      await f.install('probe');
      await f.detectAndBuild(['w/one', 'w/two', 'conformance/probe']);
      const env = await probeEnv(f);
      assert.equal(env.get('ORDER'), 'w_two,w_one');
      assert.equal(env.get('ORDERA'), 'w_one,w_two');
      assert.equal(env.get('PATH'), '/layers/w_two/envl/bin:/layers/w_one/envl/bin:/usr/bin:/bin');
    }));

  test('only build=true layers feed later buildpacks', () =>
    withFixture(async (f) => {
      await f.install('env-writer');
      await f.install('probe');
      await f.detectAndBuild(['conformance/env-writer', 'conformance/probe']);
      const env = await probeEnv(f);
      assert.equal(env.has('NOTBUILD'), false);
      assert.doesNotMatch(env.get('PATH') ?? '', /launchonly/);
    }));

  test('platform env: path variables prepended with ":", others overridden, on every exec', () =>
    withFixture(async (f) => {
      await f.install('env-writer');
      await f.install('probe');
      await f.platformEnv('PATH', '/platform/bin');
      await f.platformEnv('OVR', 'from-platform');
      await f.platformEnv('RAW', 'keep\n');
      await f.detectAndBuild(['conformance/env-writer', 'conformance/probe']);
      const env = await probeEnv(f);
      assert.equal(env.get('PATH'), '/platform/bin:/layers/conformance_env-writer/envl/bin:/usr/bin:/bin');
      assert.equal(env.get('OVR'), 'from-platform');
      assert.equal(env.get('RAW'), 'keep\n');
    }));

  test('clear-env buildpacks do not get the platform env', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.inline({ id: 'clear', info: 'clear-env = true', build: 'env -0 > "$1/env.dump"' });
      await f.platformEnv('FROM_PLATFORM', 'yes');
      await f.detectAndBuild(['conformance/probe', 'clear']);
      assert.equal((await probeEnv(f)).get('FROM_PLATFORM'), 'yes');
      assert.equal(parseEnvDump(await f.layerFile('clear', 'env.dump')).has('FROM_PLATFORM'), false);
    }));

  test('build-config env: no suffix means default, .override overrides, applied after platform env', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.buildConfigEnv('BC_DEFAULT', 'from-build-config');
      await f.buildConfigEnv('BC_KEEP', 'from-build-config');
      await f.platformEnv('BC_KEEP', 'from-platform');
      await f.buildConfigEnv('BC_FORCE.override', 'forced');
      await f.platformEnv('BC_FORCE', 'from-platform');
      await f.detectAndBuild(['conformance/probe']);
      const env = await probeEnv(f);
      assert.equal(env.get('BC_DEFAULT'), 'from-build-config');
      assert.equal(env.get('BC_KEEP'), 'from-platform');
      assert.equal(env.get('BC_FORCE'), 'forced');
    }));

  test('extraEnv reaches every buildpack, clear-env ones included, unfiltered', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.inline({ id: 'clear', info: 'clear-env = true', build: 'env -0 > "$1/env.dump"' });
      await f.detectAndBuild(['conformance/probe', 'clear'], {
        extraEnv: { SSL_CERT_FILE: '/platform/ca.pem' },
      });
      assert.equal((await probeEnv(f)).get('SSL_CERT_FILE'), '/platform/ca.pem');
      assert.equal(
        parseEnvDump(await f.layerFile('clear', 'env.dump')).get('SSL_CERT_FILE'),
        '/platform/ca.pem',
      );
    }));

  test('kiln’s own environment never reaches buildpacks', () =>
    withFixture(async (f) => {
      process.env.KILN_CONFORMANCE_LEAK = 'leaked';
      try {
        await f.install('probe');
        await f.detectAndBuild(['conformance/probe']);
        const env = await probeEnv(f);
        assert.equal(env.has('KILN_CONFORMANCE_LEAK'), false);
        assert.equal(env.has('SECRET_TOKEN'), false);
      } finally {
        delete process.env.KILN_CONFORMANCE_LEAK;
      }
    }));
});

describe('build: hostile outputs', () => {
  // A file only root can read, outside the layers dir: what a buildpack would love kiln to copy.
  async function secret(f: Fixture): Promise<string> {
    const p = join(f.dir, 'secret.json');
    await writeFile(p, '{"auths":{"registry":{"auth":"c2VjcmV0"}}}', { mode: 0o600 });
    return p;
  }

  test('a launch.toml symlinked out of the layers dir is refused, not read', () =>
    withFixture(async (f) => {
      const s = await secret(f);
      await f.inline({ id: 'sneaky', build: `ln -s ${s} "$1/launch.toml"` });
      await rejectsWith(
        f.detectAndBuild(['sneaky']),
        52,
        /^layers\/sneaky\/launch\.toml is a symbolic link: expected a regular file inside the layers directory$/,
      );
    }));

  test('an env file symlinked out of the layers dir is refused', () =>
    withFixture(async (f) => {
      const s = await secret(f);
      await f.inline({
        id: 'sneaky',
        build: `mkdir -p "$1/l/env"; printf '[types]\\nbuild = true\\n' > "$1/l.toml"; ln -s ${s} "$1/l/env/CREDS"`,
      });
      await f.install('probe');
      await rejectsWith(
        f.detectAndBuild(['sneaky', 'conformance/probe']),
        52,
        /^layers\/sneaky\/l\/env\/CREDS is a symbolic link: expected a regular file/,
      );
    }));

  test('an SBOM symlinked out of the layers dir, even swapped in by a later buildpack, is refused', () =>
    withFixture(async (f) => {
      const s = await secret(f);
      await f.install('sbom');
      await f.inline({ id: 'swapper', build: `ln -sf ${s} /layers/conformance_sbom/launch.sbom.cdx.json` });
      await rejectsWith(
        f.detectAndBuild(['conformance/sbom', 'swapper']),
        52,
        /launch\.sbom\.cdx\.json is a symbolic link: expected a regular file/,
      );
    }));

  test('a FIFO where kiln reads (launch.toml, an env file) is refused instead of blocking the build', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'fifo', build: 'mkfifo "$1/launch.toml"' });
      await rejectsWith(f.detectAndBuild(['fifo']), 52, /launch\.toml is a FIFO: expected a regular file/);
      await f.inline({
        id: 'fifoenv',
        build: `mkdir -p "$1/l/env"; printf '[types]\\nbuild = true\\n' > "$1/l.toml"; mkfifo "$1/l/env/X"`,
      });
      await rejectsWith(f.detectAndBuild(['fifoenv']), 52, /env\/X is a FIFO: expected a regular file/);
    }));

  test('a planted <layers>/sbom or <layers>/config symlink is removed, not written through', () =>
    withFixture(async (f) => {
      const outside = join(f.dir, 'outside');
      await mkdir(outside);
      await chown(outside, 1000, 1000);
      await f.install('sbom');
      await f.inline({
        id: 'planter',
        build: `ln -s ${outside} /layers/sbom; ln -s ${outside} /layers/config`,
      });
      await f.detectAndBuild(['conformance/sbom', 'planter']);
      assert.deepEqual(await readdir(outside), []);
      assert.ok((await lstat(join(f.layers, 'sbom'))).isDirectory());
      assert.ok((await lstat(join(f.layers, 'config', 'metadata.toml'))).isFile());
    }));

  test('a later buildpack’s layers dir planted as a symlink is refused before kiln touches it', () =>
    withFixture(async (f) => {
      const outside = join(f.dir, 'outside');
      await mkdir(outside);
      await f.inline({ id: 'planter', build: `ln -s ${outside} /layers/victim` });
      await f.inline({ id: 'victim' });
      await rejectsWith(
        f.detectAndBuild(['planter', 'victim']),
        52,
        /layers\/victim is a symbolic link: expected a directory/,
      );
      assert.equal((await stat(outside)).uid, 0);
    }));

  test('detect cannot replace its plan file with a symlink (kiln-owned scratch dir)', () =>
    withFixture(async (f) => {
      const s = await secret(f);
      await f.inline({ id: 'swap', detect: `rm -f "$2"; ln -s ${s} "$2"` });
      await rejectsWith(f.detect(['swap']), 21);
      assert.match(await readFile(s, 'utf8'), /c2VjcmV0/);
    }));
});

describe('build: outputs', () => {
  test('a failing bin/build exits 51 naming the buildpack; later buildpacks do not run', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'broken', build: 'echo "compiling failed" >&2; exit 3' });
      await f.install('probe');
      await rejectsWith(
        f.detectAndBuild(['broken', 'conformance/probe']),
        51,
        /buildpack broken@0.0.1 failed: bin\/build exited with status 3/,
      );
      assert.match(f.log.text(), /compiling failed/);
      assert.equal(await exists(join(f.layers, 'conformance_probe', 'probe.build.env')), false);
    }));

  test('layers with all flags false are renamed <layer>.ignore; others and toml-less dirs stay', () =>
    withFixture(async (f) => {
      await f.install('layers');
      await f.detectAndBuild(['conformance/layers']);
      const names = (await readdir(join(f.layers, 'conformance_layers'))).sort();
      assert.deepEqual(names, ['ignored.ignore', 'ignored.toml', 'kept', 'kept.toml', 'notoml']);
    }));

  test('flags at the top level of <layer>.toml are an error (→ 52) naming the file', () =>
    withFixture(async (f) => {
      await f.install('layers');
      await f.platformEnv('LAYER_MODE', 'toplevel');
      await rejectsWith(
        f.detectAndBuild(['conformance/layers']),
        52,
        /bad.toml: launch: the launch, cache and build flags must be in the \[types\] table/,
      );
    }));

  test('launch.toml processes, labels and slices go to metadata.toml (sorted, default, buildpack-id)', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.install('processes');
      const md = await f.detectAndBuild(['conformance/probe', 'conformance/processes']);
      const expected = {
        'buildpack-default-process-type': 'web',
        buildpacks: [
          { id: 'conformance/probe', version: '0.0.1', api: '0.12' },
          {
            id: 'conformance/processes',
            version: '0.0.1',
            api: '0.12',
            homepage: 'https://example.com/processes',
          },
        ],
        processes: [
          {
            type: 'web',
            command: ['node', 'server.js'],
            args: ['--port', '8080'],
            direct: true,
            'working-dir': '/workspace/sub',
            'buildpack-id': 'conformance/processes',
          },
          {
            type: 'worker',
            command: ['worker'],
            args: [],
            direct: true,
            'exec-env': ['production'],
            'buildpack-id': 'conformance/processes',
          },
        ],
        slices: [{ paths: ['static/*'] }],
        labels: [{ key: 'com.example.label', value: 'from-processes' }],
        bom: [],
      };
      assert.deepEqual(md, expected);
      assert.deepEqual(await readMetadataToml(join(f.layers, 'config', 'metadata.toml')), expected);
      assert.match(await f.layerFile('conformance/processes', 'store.toml'), /answer = 42/);
    }));

  test('a later definition replaces a process; a later non-default one clears the default with a warning', () =>
    withFixture(async (f) => {
      await f.install('processes');
      await f.inline({
        id: 'override',
        build: `printf '[[processes]]\\ntype = "web"\\ncommand = ["other"]\\n' > "$1/launch.toml"`,
      });
      const md = await f.detectAndBuild(['conformance/processes', 'override']);
      assert.equal(md['buildpack-default-process-type'], undefined);
      assert.deepEqual(md.processes.find((p) => p.type === 'web')?.command, ['other']);
      assert.equal(md.processes.find((p) => p.type === 'web')?.['buildpack-id'], 'override');
      assert.ok(
        f.log.lines.some((l) => l.level === 'warn' && /redefining the default process type web/.test(l.msg)),
      );
    }));

  test('the last default process wins', () =>
    withFixture(async (f) => {
      await f.install('processes');
      await f.inline({
        id: 'newdefault',
        build: `printf '[[processes]]\\ntype = "cli"\\ncommand = ["cli"]\\ndefault = true\\n' > "$1/launch.toml"`,
      });
      const md = await f.detectAndBuild(['conformance/processes', 'newdefault']);
      assert.equal(md['buildpack-default-process-type'], 'cli');
      assert.deepEqual(
        md.processes.map((p) => p.type),
        ['cli', 'web', 'worker'],
      );
    }));

  test('two default processes in one launch.toml are an error (→ 52)', () =>
    withFixture(async (f) => {
      await f.inline({
        id: 'twodefaults',
        build: `printf '[[processes]]\\ntype = "a"\\ncommand = ["a"]\\ndefault = true\\n[[processes]]\\ntype = "b"\\ncommand = ["b"]\\ndefault = true\\n' > "$1/launch.toml"`,
      });
      await rejectsWith(f.detectAndBuild(['twodefaults']), 52, /multiple default process types/);
    }));

  test('direct in launch.toml is rejected for API 0.9+; API 0.8 string commands still work', () =>
    withFixture(async (f) => {
      await f.inline({
        id: 'direct',
        build: `printf '[[processes]]\\ntype = "a"\\ncommand = ["a"]\\ndirect = false\\n' > "$1/launch.toml"`,
      });
      await rejectsWith(
        f.detectAndBuild(['direct']),
        52,
        /processes\[0\].direct: not supported for buildpack API 0.12/,
      );
      await f.inline({
        id: 'legacy',
        api: '0.8',
        build: `printf '[[processes]]\\ntype = "web"\\ncommand = "node server.js"\\n' > "$1/launch.toml"`,
      });
      const md = await f.detectAndBuild(['legacy']);
      assert.deepEqual(md.processes[0], {
        type: 'web',
        command: ['node server.js'],
        args: [],
        direct: false,
        'buildpack-id': 'legacy',
      });
    }));

  test('build.toml unmet entries go to the next provider; met entries are removed from later plans', () =>
    withFixture(async (f) => {
      const provides = `printf '[[provides]]\\nname = "dep"\\n' >> "$2"`;
      await f.inline({
        id: 'first',
        detect: provides,
        build: `cp "$3" "$1/plan.copy"; printf '[[unmet]]\\nname = "dep"\\n' > "$1/build.toml"`,
      });
      await f.inline({ id: 'second', detect: provides, build: 'cp "$3" "$1/plan.copy"' });
      await f.inline({ id: 'third', detect: provides, build: 'cp "$3" "$1/plan.copy"' });
      await f.inline({ id: 'user', detect: `printf '[[requires]]\\nname = "dep"\\n' >> "$2"` });
      await f.detectAndBuild(['first', 'second', 'user']);
      assert.match(await f.layerFile('first', 'plan.copy'), /name = "dep"/);
      assert.match(await f.layerFile('second', 'plan.copy'), /name = "dep"/);
      const f2 = await makeFixture();
      try {
        await f2.inline({ id: 'first', detect: provides, build: 'cp "$3" "$1/plan.copy"' });
        await f2.inline({ id: 'second', detect: provides, build: 'cp "$3" "$1/plan.copy"' });
        await f2.inline({ id: 'user', detect: `printf '[[requires]]\\nname = "dep"\\n' >> "$2"` });
        await f2.detectAndBuild(['first', 'second', 'user']);
        assert.match(await f2.layerFile('first', 'plan.copy'), /name = "dep"/);
        assert.doesNotMatch(await f2.layerFile('second', 'plan.copy'), /dep/);
      } finally {
        await f2.cleanup();
      }
    }));

  test('an unmet name that is not in the plan is an error (→ 52)', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'liar', build: `printf '[[unmet]]\\nname = "never-asked"\\n' > "$1/build.toml"` });
      await rejectsWith(
        f.detectAndBuild(['liar']),
        52,
        /unmet.name 'never-asked' must match a requested dependency/,
      );
    }));

  test('SBOM files are placed under <layers>/sbom/{launch,build,cache}/<bp>/[<layer>/]', () =>
    withFixture(async (f) => {
      await f.install('sbom');
      await f.detectAndBuild(['conformance/sbom']);
      const sbom = join(f.layers, 'sbom');
      const read = (p: string) => readFile(join(sbom, p), 'utf8').then((t) => JSON.parse(t).of);
      assert.equal(await read('launch/conformance_sbom/deps/sbom.cdx.json'), 'deps');
      assert.equal(await read('cache/conformance_sbom/deps/sbom.cdx.json'), 'deps');
      assert.equal(await read('build/conformance_sbom/tools/sbom.spdx.json'), 'tools');
      assert.equal(await read('launch/conformance_sbom/sbom.cdx.json'), 'launch');
      assert.equal(await read('build/conformance_sbom/sbom.spdx.json'), 'build');
      assert.equal(await exists(join(sbom, 'launch/conformance_sbom/notalayer')), false);
      assert.equal(await exists(join(sbom, 'build/conformance_sbom/notalayer')), false);
    }));

  test('SBOM files are copied whole (beyond one 64 KiB chunk), mode 0644', () =>
    withFixture(async (f) => {
      await f.install('sbom');
      await f.platformEnv('SBOM_MODE', 'large');
      await f.detectAndBuild(['conformance/sbom']);
      const copy = join(f.layers, 'sbom', 'launch', 'conformance_sbom', 'sbom.cdx.json');
      const original = await readFile(join(f.layers, 'conformance_sbom', 'launch.sbom.cdx.json'));
      assert.ok(original.length > 200_000);
      assert.ok((await readFile(copy)).equals(original));
      for (const p of [copy, join(f.layers, 'sbom', 'launch', 'conformance_sbom', 'deps', 'sbom.cdx.json')])
        assert.equal((await stat(p)).mode & 0o7777, 0o644, p);
    }));

  test('an SBOM format missing from sbom-formats is an error (→ 52)', () =>
    withFixture(async (f) => {
      await f.install('sbom');
      await f.platformEnv('SBOM_MODE', 'undeclared');
      await rejectsWith(
        f.detectAndBuild(['conformance/sbom']),
        52,
        /undeclared SBOM media type 'application\/vnd.syft\+json'/,
      );
    }));

  test('an SBOM file of an unknown format is an error (→ 52)', () =>
    withFixture(async (f) => {
      await f.install('sbom');
      await f.platformEnv('SBOM_MODE', 'unknown');
      await rejectsWith(
        f.detectAndBuild(['conformance/sbom']),
        52,
        /unsupported SBOM file format: '.*deps.sbom.xml.json'/,
      );
    }));

  test('exec.d programs of launch layers must be executable; profile.d from API 0.9+ is warned about', () =>
    withFixture(async (f) => {
      const layer =
        'mkdir -p "$1/l/exec.d/web" "$1/l/profile.d"; printf "[types]\\nlaunch = true\\n" > "$1/l.toml"';
      await f.inline({
        id: 'execd',
        build: `${layer}; printf '#!/bin/sh\\n' > "$1/l/exec.d/web/setup"; chmod +x "$1/l/exec.d/web/setup"`,
      });
      await f.detectAndBuild(['execd']);
      assert.ok(f.log.lines.some((l) => l.level === 'warn' && /profile.d has no effect/.test(l.msg)));
      await f.inline({ id: 'noexec', build: `${layer}; printf 'X=1' > "$1/l/exec.d/plain"` });
      await rejectsWith(f.detectAndBuild(['noexec']), 52, /exec.d\/plain is not executable/);
    }));

  test('a legacy [[bom]] goes to sbom.legacy.json tagged with the buildpack; a top-level version is an error', () =>
    withFixture(async (f) => {
      await f.inline({
        id: 'legacy/bom',
        build: `printf '[[bom]]\\nname = "openssl"\\n[bom.metadata]\\nversion = "3"\\n' > "$1/launch.toml"`,
      });
      await f.detectAndBuild(['legacy/bom']);
      const legacy = JSON.parse(await readFile(join(f.layers, 'sbom', 'launch', 'sbom.legacy.json'), 'utf8'));
      assert.deepEqual(legacy, [
        { name: 'openssl', metadata: { version: '3' }, buildpack: { id: 'legacy/bom', version: '0.0.1' } },
      ]);
      assert.ok(f.log.lines.some((l) => l.level === 'warn' && /\[\[bom\]\] table is deprecated/.test(l.msg)));
      await f.inline({
        id: 'legacy/bad',
        build: `printf '[[bom]]\\nname = "openssl"\\nversion = "3"\\n' > "$1/build.toml"`,
      });
      await rejectsWith(f.detectAndBuild(['legacy/bad']), 52, /bom\[0\] 'openssl' has a top level version/);
    }));

  test('metadata.toml lists the whole group even when buildpacks contribute nothing', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'quiet/one' });
      await f.inline({ id: 'quiet/two', api: '0.10' });
      const md = await f.detectAndBuild(['quiet/one', 'quiet/two']);
      assert.deepEqual(md.buildpacks, [
        { id: 'quiet/one', version: '0.0.1', api: '0.12' },
        { id: 'quiet/two', version: '0.0.1', api: '0.10' },
      ]);
      const text = await readFile(join(f.layers, 'config', 'metadata.toml'), 'utf8');
      assert.doesNotMatch(text, /processes|buildpack-default-process-type/);
      assert.ok(await exists(join(f.layers, 'quiet_one')));
    }));
});
