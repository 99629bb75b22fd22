// Hostile buildpack output read by kiln (root) after the sandbox ends: launch.toml labels that
// would overwrite the platform's own labels, and launch.toml / layer names / process types /
// FIFOs that must fail in one line with the spec's exit code.

import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { exitCodeOf } from '../../src/cli/exit-codes.ts';
import { LIFECYCLE_METADATA_LABEL, parseLifecycleMetadata } from '../../src/cnb/lifecycle-metadata.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { type E2E, makeE2E } from '../e2e/build-fixture.ts';

const asRoot = (process.getuid?.() ?? 0) === 0;

describe('hostile buildpack output', { skip: !asRoot && 'needs root' }, () => {
  let e: E2E;
  let app: string;
  let n = 0;
  before(async () => {
    e = await makeE2E();
    app = await e.app('hostile-output', 'hi');
  });
  after(async () => {
    await e?.cleanup();
  });

  async function buildpack(script: string): Promise<string> {
    const d = path.join(e.root, 'bps', String(n++));
    await mkdir(path.join(d, 'bin'), { recursive: true });
    await writeFile(
      path.join(d, 'buildpack.toml'),
      `api = "0.12"\n[buildpack]\nid = "hostile/out${n}"\nversion = "1"\n`,
    );
    await writeFile(path.join(d, 'bin', 'detect'), '#!/usr/bin/env bash\nexit 0\n');
    await writeFile(path.join(d, 'bin', 'build'), `#!/usr/bin/env bash\nset -eu\n${script}\n`);
    for (const b of ['detect', 'build']) await chmod(path.join(d, 'bin', b), 0o755);
    return d;
  }

  test("launch.toml labels cannot replace kiln's io.buildpacks.* / io.kiln.* labels; other labels apply", async () => {
    const forged = JSON.stringify({ buildpacks: [{ key: 'victim/bp', layers: { x: { launch: true } } }] });
    const script = `cat > "$1/launch.toml" <<'EOF'
[[labels]]
key = "${LIFECYCLE_METADATA_LABEL}"
value = '${forged}'
[[labels]]
key = "io.buildpacks.base.id"
value = "forged"
[[labels]]
key = "io.kiln.build.user"
value = "0:0"
[[labels]]
key = "com.example.ok"
value = "yes"
EOF`;
    const r = await e.build(app, `hostile/out-${n}`, { buildpacks: [await buildpack(script)] });
    const img = await e.store.find(r.names[0]!);
    assert.ok(img);
    const labels = (await img.configFile()).config?.Labels ?? {};
    assert.equal(labels['com.example.ok'], 'yes');
    assert.notEqual(labels[LIFECYCLE_METADATA_LABEL], forged);
    const md = parseLifecycleMetadata(labels[LIFECYCLE_METADATA_LABEL]!);
    assert.ok(!md.buildpacks?.some((b) => b.key === 'victim/bp'));
    assert.notEqual(labels['io.kiln.build.user'], '0:0');
    assert.equal(labels['io.buildpacks.base.id'], 'io.kiln.e2e', "the run image's base id stays");
    const warned = r.log.lines.filter((l) => l.startsWith('Warning: Ignoring label'));
    assert.equal(warned.length, 3, r.log.lines.join('\n'));
    assert.match(
      warned[0]!,
      /^Warning: Ignoring label "io\.buildpacks\.lifecycle\.metadata" from launch\.toml: /,
    );
  });

  const refused: [string, string, RegExp, number][] = [
    [
      'a process type of ".."',
      `printf '[[processes]]\\ntype = ".."\\ncommand = ["/bin/sh"]\\n' > "$1/launch.toml"`,
      /process type "\.\." must match/,
      62,
    ],
    [
      'a NUL in a process command',
      `printf '[[processes]]\\ntype = "web"\\ncommand = ["/bin/sh\\\\u0000x"]\\n' > "$1/launch.toml"`,
      /command contains a NUL byte/,
      62,
    ],
    [
      'a 20 MB launch.toml',
      `{ printf '[[processes]]\\ntype = "web"\\ncommand = ["x"]\\nargs = ['; head -c 20000000 /dev/zero | tr '\\0' 'a'; printf '"]\\n'; } > "$1/launch.toml"`,
      /launch\.toml is larger than 16777216 bytes, the most kiln reads$/,
      52,
    ],
    ['a FIFO as store.toml', 'mkfifo "$1/store.toml"', /store\.toml is a FIFO: expected a regular file/, 62],
    [
      'a launch layer directory that is a link to a host directory',
      `ln -s /etc "$1/l"; printf '[types]\\nlaunch = true\\n' > "$1/l.toml"`,
      /\/l is a symbolic link: expected a directory inside the layers directory$/,
      52,
    ],
  ];
  for (const [what, script, expected, code] of refused) {
    test(`${what} fails in one line with exit code ${code}`, async () => {
      const err = await e.build(app, `hostile/out-${n}`, { buildpacks: [await buildpack(script)] }).then(
        () => assert.fail('expected the build to fail'),
        (x: unknown) => x,
      );
      assert.ok(err instanceof KilnError, String(err));
      assert.match(err.message, expected);
      assert.doesNotMatch(err.message, /\n/);
      assert.equal(exitCodeOf(err), code);
    });
  }
});
