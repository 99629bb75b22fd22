// Conformance: the detect phase, one case per rule (CNB Buildpack API 0.10–0.12, Platform 0.15),
// run through the real bubblewrap sandbox as uid 1000.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ApiVersion } from '../../src/cnb/api.ts';
import { readGroupToml } from '../../src/cnb/group-toml.ts';
import { readPlanToml } from '../../src/cnb/plan-toml.ts';
import { parseArgsDump, parseEnvDump, rejectsWith, withFixture } from './harness.ts';

const pass = 'exit 0';
const provide = (name: string) => `printf '[[provides]]\\nname = "${name}"\\n' >> "$2"`;
const require_ = (name: string) => `printf '[[requires]]\\nname = "${name}"\\n' >> "$2"`;

describe('detect: inputs', () => {
  for (const api of ['0.10', '0.11', '0.12']) {
    test(`positional args $1=<platform> $2=<plan> and cwd=<app> for Buildpack API ${api}`, () =>
      withFixture(async (f) => {
        const { id } = await f.install('probe', { api, id: `conformance/probe-${api}` });
        await f.detect([id]);
        const base = join(f.layers, `conformance_probe-${api}.detect`);
        const args = parseArgsDump(await readFile(`${base}.args`, 'utf8'));
        const env = parseEnvDump(await readFile(`${base}.env`, 'utf8'));
        assert.equal(args.length, 2);
        assert.equal(args[0], '/platform');
        assert.equal(args[1], env.get('CNB_BUILD_PLAN_PATH'));
        assert.equal((await readFile(`${base}.pwd`, 'utf8')).trim(), '/workspace');
        assert.equal(env.get('CNB_BUILDPACK_DIR'), `/cnb/buildpacks/conformance_probe-${api}/0.0.1`);
        assert.equal(env.get('CNB_PLATFORM_DIR'), '/platform');
      }));
  }

  test('the app dir is read-only during detect', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.detect(['conformance/probe']);
      assert.equal(
        (await readFile(join(f.layers, 'conformance_probe.detect.app'), 'utf8')).trim(),
        'readonly',
      );
    }));

  test('CNB_TARGET_* for API 0.10+, CNB_EXEC_ENV only for 0.12, neither before 0.10', () =>
    withFixture(async (f) => {
      await f.install('probe', { id: 'p/old', api: '0.9' });
      await f.install('probe', { id: 'p/eleven', api: '0.11' });
      await f.install('probe', { id: 'p/twelve', api: '0.12' });
      await f.detect(['p/old', 'p/eleven', 'p/twelve'], { execEnv: 'test' });
      const env = async (n: string) =>
        parseEnvDump(await readFile(join(f.layers, `${n}.detect.env`), 'utf8'));
      const old = await env('p_old');
      const eleven = await env('p_eleven');
      const twelve = await env('p_twelve');
      assert.equal(old.has('CNB_TARGET_OS'), false);
      assert.equal(eleven.get('CNB_TARGET_OS'), 'linux');
      assert.equal(eleven.get('CNB_TARGET_ARCH'), 'amd64');
      assert.equal(eleven.get('CNB_TARGET_DISTRO_NAME'), 'debian');
      assert.equal(eleven.get('CNB_TARGET_DISTRO_VERSION'), '12');
      assert.equal(eleven.has('CNB_TARGET_ARCH_VARIANT'), false);
      assert.equal(eleven.has('CNB_EXEC_ENV'), false);
      assert.equal(twelve.get('CNB_EXEC_ENV'), 'test');
    }));

  test('the environment is built from scratch: only allowlisted base variables reach buildpacks', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.detect(['conformance/probe'], {
        baseEnv: {
          PATH: '/usr/bin:/bin',
          HOME: '/home/cnb',
          SECRET_TOKEN: 'x',
          HTTPS_PROXY: 'http://proxy:3128',
        },
      });
      const env = parseEnvDump(await readFile(join(f.layers, 'conformance_probe.detect.env'), 'utf8'));
      assert.equal(env.has('SECRET_TOKEN'), false);
      assert.equal(env.get('HOME'), '/home/cnb');
      assert.equal(env.get('HTTPS_PROXY'), 'http://proxy:3128');
      assert.equal(env.get('PATH'), '/usr/bin:/bin');
    }));

  test('platform env applies to detect, and not to clear-env buildpacks', () =>
    withFixture(async (f) => {
      await f.platformEnv('FROM_PLATFORM', 'yes');
      await f.install('probe');
      await f.inline({
        id: 'clear',
        info: 'clear-env = true',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash expansion
        detect: 'echo "FROM_PLATFORM=${FROM_PLATFORM:-unset}"; exit 0',
      });
      const r = await f.detect(['conformance/probe', 'clear']);
      const env = parseEnvDump(await readFile(join(f.layers, 'conformance_probe.detect.env'), 'utf8'));
      assert.equal(env.get('FROM_PLATFORM'), 'yes');
      assert.deepEqual(r.runs.get('clear@0.0.1')?.output, ['FROM_PLATFORM=unset']);
    }));
});

describe('detect: exit codes', () => {
  test('exit 100 everywhere → 20, with what each buildpack printed', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a', detect: 'echo "no package.json found"; exit 100' });
      await f.inline({ id: 'b', detect: 'echo "no Procfile"; exit 100' });
      await rejectsWith(
        f.detect([{ group: [{ id: 'a' }] }, { group: [{ id: 'b' }] }]),
        20,
        /a@0.0.1 did not match \(no package.json found\).*b@0.0.1 did not match \(no Procfile\)/,
      );
      assert.match(f.log.text(), /fail: a@0.0.1\n {2}no package.json found\nfail: b@0.0.1\n {2}no Procfile/);
    }));

  test('another exit code is an error → 21 when nothing passed', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a', detect: 'echo boom >&2; exit 3' });
      await f.inline({ id: 'b', detect: 'exit 100' });
      await rejectsWith(
        f.detect([{ group: [{ id: 'a' }] }, { group: [{ id: 'b' }] }]),
        21,
        /a@0.0.1 errored \(exit 3\): boom/,
      );
      assert.match(f.log.text(), /======== Output: a@0.0.1 ========\nboom/);
    }));

  test('an error in one group does not stop a later group from passing', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a', detect: 'exit 7' });
      await f.inline({ id: 'b', detect: pass });
      const r = await f.detect([{ group: [{ id: 'a' }] }, { group: [{ id: 'b' }] }]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['b'],
      );
    }));

  test('runaway detect output is capped', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'chatty', detect: 'yes line | head -n 5000; exit 0' });
      const r = await f.detect(['chatty']);
      const out = r.runs.get('chatty@0.0.1')!.output;
      assert.equal(out.length, 1001);
      assert.equal(out.at(-1), '… (further output dropped)');
    }));

  test('a buildpack missing from the store → 22', () =>
    withFixture(async (f) => {
      await rejectsWith(f.detect(['nope/missing']), 22, /nope\/missing not found/);
    }));

  test('an unsupported Buildpack API → 12', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'ancient', api: '0.2' });
      await rejectsWith(f.detect(['ancient']), 12, /buildpack API 0.2 is not supported/);
    }));

  test('an exec-env with "/" is an invalid argument (→ 3)', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a' });
      await rejectsWith(f.detect(['a'], { execEnv: 'a/b' }), 3, /must not contain/);
    }));

  test('buildpacks never run as root', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a' });
      await rejectsWith(f.detect(['a'], { uid: 0, gid: 0 }), 22, /refusing to run buildpacks as root/);
    }));

  test('platform env reaches bin/detect as a value, exit code from it (100 → 20)', () =>
    withFixture(async (f) => {
      await f.install('probe');
      await f.platformEnv('PROBE_DETECT_EXIT', '100');
      await rejectsWith(
        f.detect(['conformance/probe']),
        20,
        /conformance\/probe@0.0.1 did not match \(probe detect ran\)/,
      );
    }));
});

describe('detect: order resolution', () => {
  test('the first passing group wins and group.toml lists id, version, api and homepage', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a', detect: 'exit 100' });
      await f.inline({ id: 'b', info: 'homepage = "https://b.example"' });
      await f.inline({ id: 'c', api: '0.10' });
      const r = await f.detect([
        { group: [{ id: 'a' }, { id: 'b' }] },
        { group: [{ id: 'b' }, { id: 'c' }] },
      ]);
      assert.deepEqual(r.group, [
        { id: 'b', version: '0.0.1', api: '0.12', homepage: 'https://b.example' },
        { id: 'c', version: '0.0.1', api: '0.10' },
      ]);
      assert.deepEqual((await readGroupToml(join(f.layers, 'group.toml'))).group, r.group);
    }));

  test('a failing optional buildpack is left out; a failing required one fails the group', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'opt', detect: 'exit 100' });
      await f.inline({ id: 'req' });
      const r = await f.detect([{ group: [{ id: 'opt', optional: true }, { id: 'req' }] }]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['req'],
      );
      await rejectsWith(f.detect([{ group: [{ id: 'opt' }, { id: 'req' }] }]), 20);
    }));

  test('a group of only optional failures does not pass', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'opt', detect: 'exit 100' });
      await rejectsWith(f.detect([{ group: [{ id: 'opt', optional: true }] }]), 20);
    }));

  test('nested composite orders expand depth-first: [E, C] with C = [[A, B], [D]]', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'e' });
      await f.inline({ id: 'a', detect: 'exit 100' });
      await f.inline({ id: 'b' });
      await f.inline({ id: 'd' });
      await f.inline({
        id: 'c',
        composite: true,
        toml: '[[order]]\n[[order.group]]\nid = "a"\nversion = "0.0.1"\n[[order.group]]\nid = "b"\nversion = "0.0.1"\n[[order]]\n[[order.group]]\nid = "d"\nversion = "0.0.1"\n',
      });
      const r = await f.detect([{ group: [{ id: 'e' }, { id: 'c' }] }]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['e', 'd'],
      );
    }));

  test('a composite inside a composite, followed by more buildpacks', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'x' });
      await f.inline({ id: 'y' });
      await f.inline({
        id: 'inner',
        composite: true,
        toml: '[[order]]\n[[order.group]]\nid = "x"\nversion = "0.0.1"\n',
      });
      await f.inline({
        id: 'outer',
        composite: true,
        toml: '[[order]]\n[[order.group]]\nid = "inner"\nversion = "0.0.1"\n',
      });
      const r = await f.detect([{ group: [{ id: 'outer' }, { id: 'y' }] }]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['x', 'y'],
      );
    }));

  test('an optional composite whose groups all fail is skipped', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'bad', detect: 'exit 100' });
      await f.inline({ id: 'good' });
      await f.inline({
        id: 'comp',
        composite: true,
        toml: '[[order]]\n[[order.group]]\nid = "bad"\nversion = "0.0.1"\n',
      });
      const r = await f.detect([{ group: [{ id: 'comp', optional: true }, { id: 'good' }] }]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['good'],
      );
    }));

  test('an id already in the group is skipped and each bin/detect runs once', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'a', detect: 'echo ran; exit 0' });
      await f.inline({ id: 'b', detect: 'exit 100' });
      const r = await f.detect([
        { group: [{ id: 'a' }, { id: 'b' }] },
        { group: [{ id: 'a' }, { id: 'a' }] },
      ]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['a'],
      );
      assert.equal(
        f.log.lines.filter((l) => l.msg === 'ran').length,
        2,
        'output shown per resolution, run once',
      );
      assert.equal(r.runs.size, 2);
    }));

  test('target mismatch of a required buildpack is a detect error; a matching distro passes', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'arm', toml: '[[targets]]\nos = "linux"\narch = "arm64"\n' });
      await f.inline({
        id: 'deb',
        toml: '[[targets]]\nos = "linux"\n[[targets.distros]]\nname = "debian"\nversion = "12"\n',
      });
      await rejectsWith(f.detect(['arm']), 21, /unable to satisfy target os\/arch constraints/);
      const r = await f.detect(['deb']);
      assert.equal(r.group[0]!.id, 'deb');
    }));

  test('before Platform API 0.15 exec-env does not filter buildpacks', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'testonly', info: 'exec-env = ["test"]' });
      const r = await f.detect(['testonly'], { platformApi: ApiVersion.parse('0.14') });
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['testonly'],
      );
    }));

  test('system.toml pre and post buildpacks surround every group, skipping ids already present', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'sys/pre' });
      await f.inline({ id: 'sys/post', detect: 'exit 100' });
      await f.inline({ id: 'main' });
      const system = {
        system: {
          pre: { buildpacks: [{ id: 'sys/pre', version: '0.0.1' }] },
          post: { buildpacks: [{ id: 'sys/post', version: '0.0.1', optional: true }, { id: 'main' }] },
        },
      };
      const { detect } = await import('../../src/lifecycle/detect.ts');
      const r = await detect({ ...f.options(), order: [{ group: [{ id: 'main' }] }], system });
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['sys/pre', 'main'],
      );
    }));

  test('a buildpack whose exec-env excludes the current one is skipped (Platform 0.15)', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'testonly', info: 'exec-env = ["test"]' });
      await f.inline({ id: 'any', info: 'exec-env = ["*"]' });
      const r = await f.detect(['testonly', 'any']);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['any'],
      );
      const t = await f.detect(['testonly', 'any'], { execEnv: 'test' });
      assert.deepEqual(
        t.group.map((g) => g.id),
        ['testonly', 'any'],
      );
    }));
});

describe('detect: build plan resolution', () => {
  test('requires are met by earlier or same providers; plan.toml lists providers and requires', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'node', detect: provide('node') });
      await f.inline({
        id: 'npm',
        detect: `${provide('node_modules')}; ${require_('node_modules')}; printf '[[requires]]\\nname = "node"\\n[requires.metadata]\\nversion = "22"\\n' >> "$2"`,
      });
      const r = await f.detect(['node', 'npm']);
      assert.deepEqual(r.plan.entries, [
        {
          providers: [{ id: 'node', version: '0.0.1' }],
          requires: [{ name: 'node', metadata: { version: '22' } }],
        },
        { providers: [{ id: 'npm', version: '0.0.1' }], requires: [{ name: 'node_modules' }] },
      ]);
      const onDisk = await readPlanToml(join(f.layers, 'plan.toml'));
      assert.equal(onDisk.entries.length, 2);
    }));

  test('a require with no earlier provider fails the group (→ 20)', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'needs', detect: require_('jdk') });
      await f.inline({ id: 'later', detect: provide('jdk') });
      // Both passed: the error says why the group still failed.
      await rejectsWith(f.detect(['needs', 'later']), 20, /build plan: needs@[^ ]+ requires jdk/);
    }));

  test('a provide nobody requires fails the group', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'gives', detect: provide('thing') });
      await rejectsWith(f.detect(['gives']), 20, /build plan: gives@[^ ]+ provides unused thing/);
    }));

  test('optional buildpacks with unmet requires or unused provides are dropped', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'base' });
      await f.inline({ id: 'needy', detect: require_('missing') });
      await f.inline({ id: 'giver', detect: provide('unused') });
      const r = await f.detect([
        { group: [{ id: 'base' }, { id: 'needy', optional: true }, { id: 'giver', optional: true }] },
      ]);
      assert.deepEqual(
        r.group.map((g) => g.id),
        ['base'],
      );
      assert.match(f.log.text(), /1 of 3 buildpacks participating/);
    }));

  test('[[or]] alternatives are tried in order', () =>
    withFixture(async (f) => {
      await f.inline({
        id: 'py',
        detect: `${provide('python')}; printf '[[or]]\\n[[or.provides]]\\nname = "python3"\\n' >> "$2"`,
      });
      await f.inline({ id: 'consumer', detect: require_('python3') });
      const r = await f.detect(['py', 'consumer']);
      assert.deepEqual(r.plan.entries, [
        { providers: [{ id: 'py', version: '0.0.1' }], requires: [{ name: 'python3' }] },
      ]);
    }));

  test('a top-level requires.version is a detect error (→ 21)', () =>
    withFixture(async (f) => {
      await f.inline({
        id: 'versioned',
        detect: `${provide('x')}; printf '[[requires]]\\nname = "x"\\nversion = "1.0"\\n' >> "$2"`,
      });
      await rejectsWith(f.detect(['versioned']), 21, /has a "version" key.*metadata.version/);
    }));

  test('a reserved buildpack id is refused (→ 22)', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'app' });
      await rejectsWith(f.detect(['app']), 22, /buildpack.id: id must not be one of app/);
    }));

  test('an invalid build plan is a detect error naming the buildpack', () =>
    withFixture(async (f) => {
      await f.inline({ id: 'garbled', detect: `echo 'provides = ' >> "$2"` });
      await rejectsWith(f.detect(['garbled']), 21, /build plan of garbled@0.0.1: invalid TOML/);
    }));
});
