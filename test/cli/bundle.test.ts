import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  appendFile,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// bin/kiln runs the bundled CLI (dist/cli/main.js, scripts/build.d/cli.sh) only while nothing it
// is built from is newer; otherwise the sources. Checked on a copy of the tree (bin, scripts, src,
// package files; node_modules and .tools linked) so the real dist/ and src/ stay untouched.

const execFileP = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let root: string;
let home: string;

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'kiln-bundle-'));
  home = path.join(root, 'home');
  for (const d of ['bin', 'scripts', 'src', 'package.json', 'package-lock.json'])
    await cp(path.join(repo, d), path.join(root, d), { recursive: true, preserveTimestamps: true });
  for (const d of ['node_modules', '.tools']) await symlink(path.join(repo, d), path.join(root, d));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** touchTree sets the times of a directory tree (files and directories) to `t`. */
async function touchTree(dir: string, t: Date): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true }))
    if (e.isDirectory()) await touchTree(path.join(dir, e.name), t);
    else await utimes(path.join(dir, e.name), t, t);
  await utimes(dir, t, t);
}

async function kiln(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return execFileP(path.join(root, 'bin', 'kiln'), args, {
    env: { PATH: process.env.PATH, HOME: home, KILN_HOME: path.join(home, 'kiln') },
  });
}

describe('bin/kiln and the bundled CLI', () => {
  test('runs the bundle while it is fresh, the sources once one is newer', async () => {
    await execFileP('bash', [path.join(root, 'scripts', 'build.d', 'cli.sh')]);
    const bundle = path.join(root, 'dist', 'cli', 'main.js');
    const chunks = await readdir(path.dirname(bundle));
    assert.ok(
      chunks.some((f) => f.startsWith('chunk-')),
      'code splitting keeps lazy imports in chunks',
    );
    // Mark the bundle (keeping its time stamp): the mark shows which of the two ran.
    const { mtime } = await stat(bundle);
    await appendFile(bundle, "\nprocess.stderr.write('kiln-from-bundle\\n');\n");
    await utimes(bundle, mtime, mtime);
    const fromBundle = await kiln('--version');
    assert.equal(fromBundle.stdout.trim(), '0.1.0');
    assert.match(fromBundle.stderr, /kiln-from-bundle/);
    const help = await kiln('build', '--help');
    assert.match(help.stdout, /--ca-certs <file>/);

    // A source edited after the bundle was built: the sources run.
    const later = new Date(mtime.getTime() + 2000);
    const edited = path.join(root, 'src', 'cli', 'platform-options.ts');
    await utimes(edited, later, later);
    const fromSource = await kiln('--version');
    assert.equal(fromSource.stdout.trim(), '0.1.0');
    assert.doesNotMatch(fromSource.stderr, /kiln-from-bundle/);

    // Rebuilt: fresh again; a new source file (its directory changes) makes it stale too.
    await execFileP('bash', [path.join(root, 'scripts', 'build.d', 'cli.sh')]);
    await appendFile(bundle, "\nprocess.stderr.write('kiln-from-bundle\\n');\n");
    const old = new Date(Date.now() - 60_000);
    await touchTree(path.join(root, 'src'), old);
    for (const f of [
      'package.json',
      'package-lock.json',
      'scripts/build.d/cli.sh',
      'scripts/build.d/cli-bundle.ts',
      'scripts/build.d/third-party-notices.ts',
    ])
      await utimes(path.join(root, f), old, old);
    const now = new Date();
    await utimes(bundle, now, now);
    assert.match((await kiln('--version')).stderr, /kiln-from-bundle/);
    await writeFile(path.join(root, 'src', 'cli', 'new-module.ts'), 'export {};\n');
    assert.doesNotMatch((await kiln('--version')).stderr, /kiln-from-bundle/);
  });

  test('the bundle resolves kiln files relative to the sources (launcher, stack, default builder)', async () => {
    // import.meta.url is rewritten per source file: DEFAULT_LAUNCHER_DIR etc. must not move.
    const bundleDir = path.join(root, 'dist', 'cli');
    const { stdout } = await execFileP(process.execPath, [
      '--input-type=module',
      '-e',
      `const fs = await import('node:fs');
       const dir = ${JSON.stringify(bundleDir)};
       let found = 0;
       for (const f of fs.readdirSync(dir)) {
         const t = fs.readFileSync(dir + '/' + f, 'utf8');
         for (const m of t.matchAll(/new URL\\("([^"]+\\.ts)", import\\.meta\\.url\\)/g)) {
           found++;
           const p = new URL(m[1], 'file://' + dir + '/' + f).pathname;
           if (!fs.existsSync(p)) throw new Error(f + ': ' + m[1] + ' does not exist');
         }
       }
       console.log(found);`,
    ]);
    assert.ok(Number(stdout) >= 4, `expected the four import.meta.url uses rewritten, got ${stdout}`);
  });

  test('the bundle keeps legal comments and ships THIRD-PARTY-NOTICES with each bundled package', async () => {
    const dir = path.join(root, 'dist', 'cli');
    const chunks = (await readdir(dir)).filter((f) => f.endsWith('.js'));
    const code = (await Promise.all(chunks.map((f) => readFile(path.join(dir, f), 'utf8')))).join('\n');
    // esbuild gathers legal comments at the end of each chunk under this header, per source file.
    assert.match(code, /Bundled license information/);
    assert.match(code, /OpenPGP\.js v[\d.]+ .*LGPL licensed/);
    const notices = await readFile(path.join(dir, 'THIRD-PARTY-NOTICES'), 'utf8');
    // Every package a legal-comment block names (`<package>/<file>:` lines) is in the notices.
    const named = new Set(
      [...code.matchAll(/^((?:@[\w.-]+\/)?[\w.-]+)\/[\w./-]+\.[cm]?js:$/gm)].map((m) => m[1] ?? ''),
    );
    assert.ok(named.has('openpgp') && named.has('smol-toml'), `legal comments name ${[...named]}`);
    for (const name of ['commander', 'openpgp', 'smol-toml', 'zod', ...named]) {
      const { version, license } = JSON.parse(
        await readFile(path.join(repo, 'node_modules', name, 'package.json'), 'utf8'),
      );
      assert.ok(notices.includes(`\n${name} ${version}\nLicense: ${license}\n`), `${name} ${version} listed`);
    }
    assert.match(notices, /GNU LESSER GENERAL PUBLIC LICENSE/);
    assert.match(notices, /Redistribution and use in source and binary forms/);
    // Only what the bundle holds: test-only and build-only packages are not listed.
    for (const absent of ['fast-check', 'esbuild', 'typescript', 'ajv'])
      assert.ok(!notices.includes(`\n${absent} `));
  });
  test("the bundle carries zod's English messages only, starts zod jitless, and reads as the sources", async () => {
    const dir = path.join(root, 'dist', 'cli');
    const chunks = (await readdir(dir)).filter((f) => f.endsWith('.js'));
    const code = (await Promise.all(chunks.map((f) => readFile(path.join(dir, f), 'utf8')))).join('\n');
    // esbuild names each bundled file in a `// <path>` comment (the path through node_modules).
    const locales = [...code.matchAll(/^\/\/ \S*node_modules\/zod\/v4\/locales\/(\S+)$/gm)].map((m) => m[1]);
    // English and the index the build replaces with one exporting English only.
    assert.deepEqual([...new Set(locales)].sort(), ['en.js', 'index.js']);
    // Interpreted parsers (no per-schema compile): set before the first schema is built.
    assert.match(code, /\.__zod_globalConfig = \{ jitless: true \}\)/);
    const app = path.join(root, 'bad-app');
    await rm(app, { recursive: true, force: true });
    await mkdir(app);
    await writeFile(
      path.join(app, 'project.toml'),
      '[_]\nschema-version = "0.2"\n[io.buildpacks]\nexclude = "x"\n',
    );
    const run = async () => {
      const e = await kiln('build', 'bad-app', '--path', app).then(
        () => assert.fail('an invalid project.toml must fail the build'),
        (err: { stderr: string }) => err,
      );
      return e.stderr;
    };
    // The bundle runs (the mark the first test appended) while it is newer than every source.
    const future = new Date(Date.now() + 60_000);
    await utimes(path.join(dir, 'main.js'), future, future);
    const fromBundle = await run();
    assert.match(fromBundle, /kiln-from-bundle/);
    const line = /^ERROR: .*$/m.exec(fromBundle)?.[0];
    assert.equal(
      line,
      `ERROR: ${app}/project.toml: io.buildpacks.exclude: Invalid input: expected array, received string`,
    );
    const fromSources = await execFileP(path.join(root, 'bin', 'kiln'), ['build', 'bad-app', '--path', app], {
      env: { PATH: process.env.PATH, HOME: home, KILN_HOME: path.join(home, 'kiln'), KILN_FROM_SOURCE: '1' },
    }).then(
      () => assert.fail('an invalid project.toml must fail the build'),
      (err: { stderr: string }) => err.stderr,
    );
    assert.doesNotMatch(fromSources, /kiln-from-bundle/);
    assert.equal(/^ERROR: .*$/m.exec(fromSources)?.[0], line);
  });

  test("the bundle runs without node re-resolving its chunks' real paths; the sources with node's default", async () => {
    const bundle = path.join(root, 'dist', 'cli', 'main.js');
    const { mtime } = await stat(bundle);
    await appendFile(
      bundle,
      "\nprocess.stderr.write('kiln-exec-argv ' + JSON.stringify(process.execArgv) + '\\n');\n",
    );
    await utimes(bundle, mtime, mtime);
    const argvOf = (stderr: string) =>
      JSON.parse(/^kiln-exec-argv (.*)$/m.exec(stderr)?.[1] ?? 'null') as string[];
    const fromBundle = await kiln('--version');
    assert.equal(fromBundle.stdout.trim(), '0.1.0');
    assert.ok(argvOf(fromBundle.stderr).includes('--preserve-symlinks'), fromBundle.stderr);
    const fromSources = await execFileP(path.join(root, 'bin', 'kiln'), ['--version'], {
      env: { PATH: process.env.PATH, HOME: home, KILN_HOME: path.join(home, 'kiln'), KILN_FROM_SOURCE: '1' },
    });
    assert.equal(fromSources.stdout.trim(), '0.1.0');
    assert.doesNotMatch(fromSources.stderr, /kiln-exec-argv/);
    assert.doesNotMatch(fromSources.stderr, /preserve-symlinks/);
  });

  test('only the chunks that name `require` create one, and every chunk loads', async () => {
    const dir = path.join(root, 'dist', 'cli');
    const banner = "import { createRequire as __kilnRequire } from 'node:module';\n";
    let without = 0;
    for (const f of (await readdir(dir)).filter((n) => n.endsWith('.js'))) {
      const text = await readFile(path.join(dir, f), 'utf8');
      const has = text.startsWith(banner);
      const body = has ? text.slice(text.indexOf('\n', banner.length) + 1) : text;
      if (/\brequire\b/.test(body)) assert.ok(has, `${f} uses require without creating it`);
      if (!has) without++;
    }
    assert.ok(without > 10, `chunks without a require of their own: ${without}`);
    // Every chunk evaluates (the command modules among them): nothing refers to a missing require.
    const { stdout } = await execFileP(process.execPath, [
      '--input-type=module',
      '-e',
      `const fs = await import('node:fs');
       const dir = ${JSON.stringify(dir)};
       let n = 0;
       for (const f of fs.readdirSync(dir)) if (f.startsWith('chunk-') && f.endsWith('.js')) { await import(dir + '/' + f); n++; }
       console.log(n);`,
    ]);
    assert.ok(Number(stdout) > 20, stdout);
  });
});
