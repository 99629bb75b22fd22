import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiVersion } from './api.ts';
import { parseDetectPlan, topLevelVersionOf } from './build-plan.ts';
import { BuildpackToml, targetsOf } from './buildpack-toml.ts';
import { readGroupToml, writeGroupToml } from './group-toml.ts';
import { readLaunchToml } from './launch-toml.ts';
import { readLayerToml, writeLayerToml } from './layer-toml.ts';
import { readMetadataToml, writeMetadataToml } from './metadata.ts';
import { planFor, withoutMet } from './plan-toml.ts';
import { parseTomlText } from './toml-file.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-cnb-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('buildpack.toml', () => {
  const parse = (t: string) => parseTomlText(t, BuildpackToml, 'bp/buildpack.toml');

  test('reads targets with variant or arch-variant, distros, exec-env as strings or tables', () => {
    const d = parse(`api = "0.12"
[buildpack]
id = "acme/node"
version = "1.2.3"
exec-env = ["production", "test"]
sbom-formats = ["application/vnd.cyclonedx+json"]
[[targets]]
os = "linux"
arch = "arm"
arch-variant = "v7"
[[targets.distros]]
name = "debian"
version = "12"
[[targets]]
os = "linux"
arch = "arm64"
variant = "v8"
`);
    assert.deepEqual(d.buildpack['exec-env'], ['production', 'test']);
    const t = targetsOf(d, true);
    assert.equal(t[0]!.variant, 'v7');
    assert.deepEqual(t[0]!.distros, [{ name: 'debian', version: '12' }]);
    assert.equal(t[1]!.variant, 'v8');
    const tables = parse(`api = "0.12"
[buildpack]
id = "a"
version = "1.0.0"
[[buildpack.exec-env]]
name = "test"
`);
    assert.deepEqual(tables.buildpack['exec-env'], ['test']);
  });

  test('infers targets from stacks, then from bin/build', () => {
    const any = parse('api = "0.10"\n[buildpack]\nid = "a"\nversion = "1.0.0"\n[[stacks]]\nid = "*"\n');
    assert.deepEqual(targetsOf(any, true), [{}]);
    const bionic = parse(
      'api = "0.10"\n[buildpack]\nid = "a"\nversion = "1.0.0"\n[[stacks]]\nid = "io.buildpacks.stacks.bionic"\n',
    );
    assert.deepEqual(targetsOf(bionic, true), [
      { os: 'linux', arch: 'amd64', distros: [{ name: 'ubuntu', version: '18.04' }] },
    ]);
    const none = parse('api = "0.10"\n[buildpack]\nid = "a"\nversion = "1.0.0"\n');
    assert.deepEqual(targetsOf(none, true), [{ os: 'linux' }]);
    assert.deepEqual(targetsOf(none, false), []);
  });

  test('errors name the file and key', () => {
    assert.throws(
      () => parse('api = "0.12"\n[buildpack]\nid = "a b"\nversion = "1"\n'),
      /bp\/buildpack.toml: buildpack.id: /,
    );
    assert.throws(
      () => parse('api = "0.12"\n[buildpack]\nid = "config"\nversion = "1"\n'),
      /buildpack.id: id must not be/,
    );
    assert.throws(() => parse('api = "0.12"\n[buildpack]\nid = "a"\n'), /buildpack.version/);
    assert.throws(
      () =>
        parse(
          'api = "0.12"\n[buildpack]\nid = "a"\nversion = "1"\n[[stacks]]\nid="*"\n[[order]]\n[[order.group]]\nid="b"\n',
        ),
      /stacks: stacks must not be declared together with order/,
    );
    assert.throws(() => parse('api = \n'), /bp\/buildpack.toml: invalid TOML/);
  });
});

describe('layer.toml', () => {
  test('reads [types] and metadata; a missing file is all false', async () => {
    const p = await file('l1.toml', '[types]\nlaunch = true\ncache = true\n[metadata]\nv = "1"\n');
    assert.deepEqual(await readLayerToml(p), {
      types: { launch: true, build: false, cache: true },
      metadata: { v: '1' },
    });
    assert.deepEqual((await readLayerToml(join(dir, 'absent.toml'))).types, {
      launch: false,
      build: false,
      cache: false,
    });
  });

  test('top-level flags are an error naming the file and key', async () => {
    const p = await file('l2.toml', 'launch = true\n');
    await assert.rejects(
      readLayerToml(p),
      /l2.toml: launch: the launch, cache and build flags must be in the \[types\] table/,
    );
  });

  test('writeLayerToml() without types writes no [types] table (restored layers)', async () => {
    const p = join(dir, 'l3.toml');
    await writeLayerToml(p, { a: 1 });
    assert.doesNotMatch(await readFile(p, 'utf8'), /types/);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.endsWith('.tmp')),
      [],
    );
  });
});

describe('launch.toml', () => {
  test('API 0.9+: array commands, args, working-dir, exec-env; direct rejected', async () => {
    const p = await file(
      'launch1.toml',
      '[[processes]]\ntype = "web"\ncommand = ["node", "s.js"]\nargs = ["-p"]\ndefault = true\nworking-dir = "/w"\nexec-env = ["test"]\n[[labels]]\nkey = "k"\nvalue = "v"\n[[slices]]\npaths = ["a/*"]\n',
    );
    const l = (await readLaunchToml(p, ApiVersion.parse('0.12')))!;
    assert.deepEqual(l.processes[0], {
      type: 'web',
      command: ['node', 's.js'],
      args: ['-p'],
      direct: true,
      default: true,
      workingDir: '/w',
      execEnv: ['test'],
    });
    assert.deepEqual(l.labels, [{ key: 'k', value: 'v' }]);
    const d = await file('launch2.toml', '[[processes]]\ntype = "web"\ncommand = ["x"]\ndirect = true\n');
    await assert.rejects(readLaunchToml(d, ApiVersion.parse('0.10')), /launch2.toml: processes\[0\].direct/);
    const s = await file('launch3.toml', '[[processes]]\ntype = "web"\ncommand = "x"\n');
    await assert.rejects(
      readLaunchToml(s, ApiVersion.parse('0.10')),
      /processes\[0\].command: must be an array/,
    );
  });

  test('API < 0.9: string command, direct defaults to false', async () => {
    const p = await file('launch4.toml', '[[processes]]\ntype = "web"\ncommand = "node s.js"\n');
    const l = (await readLaunchToml(p, ApiVersion.parse('0.8')))!;
    assert.deepEqual(l.processes[0]!.command, ['node s.js']);
    assert.equal(l.processes[0]!.direct, false);
    const w = await file('launch6.toml', '[[processes]]\ntype = "web"\ncommand = "x"\nworking-dir = "/w"\n');
    const old = (await readLaunchToml(w, ApiVersion.parse('0.7')))!;
    assert.equal(old.processes[0]!.workingDir, undefined);
    assert.match(old.warnings[0]!, /working directory isn't supported in buildpack API 0.7/);
  });

  test('two defaults in one buildpack is an error; absent file is undefined', async () => {
    const p = await file(
      'launch5.toml',
      '[[processes]]\ntype = "a"\ncommand = ["a"]\ndefault = true\n[[processes]]\ntype = "b"\ncommand = ["b"]\ndefault = true\n',
    );
    await assert.rejects(readLaunchToml(p, ApiVersion.parse('0.12')), /multiple default process types/);
    assert.equal(await readLaunchToml(join(dir, 'nope.toml'), ApiVersion.parse('0.12')), undefined);
  });
});

describe('build plan', () => {
  test('parses provides, requires and or; finds top-level versions', () => {
    const p = parseDetectPlan(
      '[[provides]]\nname = "a"\n[[requires]]\nname = "a"\n[requires.metadata]\nversion = "1"\n[[or]]\n[[or.requires]]\nname = "b"\nversion = "2"\n',
      'plan',
    );
    assert.equal(p.or.length, 1);
    assert.equal(topLevelVersionOf(p), 'b');
    assert.deepEqual(parseDetectPlan('', 'plan'), { provides: [], requires: [], or: [] });
  });

  test('planFor() and withoutMet() follow the lifecycle Plan.Find and Plan.Filter', () => {
    const plan = {
      entries: [
        {
          providers: [{ id: 'a', version: '1' }],
          requires: [{ name: 'x' }, { name: 'x', metadata: { k: 1 } }],
        },
        {
          providers: [
            { id: 'a', version: '1' },
            { id: 'b', version: '1' },
          ],
          requires: [{ name: 'y' }],
        },
      ],
    };
    assert.deepEqual(
      planFor(plan, 'a').map((r) => r.name),
      ['x', 'x', 'y'],
    );
    assert.deepEqual(planFor(plan, 'b'), [{ name: 'y' }]);
    assert.deepEqual(withoutMet(plan, ['x']).entries.length, 1);
  });
});

describe('group.toml and metadata.toml', () => {
  test('round-trip', async () => {
    const g = join(dir, 'group.toml');
    await writeGroupToml(g, { group: [{ id: 'a', version: '1', api: '0.12' }] });
    assert.deepEqual((await readGroupToml(g)).group, [{ id: 'a', version: '1', api: '0.12' }]);
    const m = join(dir, 'config', 'metadata.toml');
    const value = {
      'buildpack-default-process-type': 'web',
      buildpacks: [{ id: 'a', version: '1', api: '0.12' }],
      processes: [{ type: 'web', command: ['x'], args: [], direct: true, 'buildpack-id': 'a' }],
      slices: [{ paths: ['s'] }],
      labels: [{ key: 'k', value: 'v' }],
      bom: [],
    };
    await writeMetadataToml(m, value);
    assert.deepEqual(await readMetadataToml(m), value);
  });

  test('group.toml without api is an error naming the key', async () => {
    const p = await file('g2.toml', '[[group]]\nid = "a"\nversion = "1"\n');
    await assert.rejects(readGroupToml(p), /g2.toml: group\[0\].api/);
  });
});
