// Bundles kiln's CLI (src/cli/main.ts and everything it imports, npm dependencies included) into
// ESM chunks under dist/cli/ (scripts/build.d/cli.sh runs this). Loading ~250 modules one by one
// (resolution, type stripping, linking) costs ~0.2 s per run; a handful of bundled chunks a
// fraction of that. Code splitting keeps dynamically imported commands and libraries lazy.
// bin/kiln runs dist/cli/main.js only while nothing it was built from is newer than it.
//
// Bundled npm packages keep their legal comments (at the end of each chunk), and
// THIRD-PARTY-NOTICES beside main.js lists each of them with its license text: the bundle is a copy
// of that code (openpgp's LGPL among it), and its licenses travel with it.
//
// Usage: node scripts/build.d/cli-bundle.ts <outdir> <start time in ms>
import { readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { writeNotices } from './third-party-notices.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const [outdir, startedArg] = process.argv.slice(2);
if (!outdir || !startedArg) throw new Error('usage: cli-bundle.ts <outdir> <start time in ms>');
const out = path.resolve(outdir);
// Where the bundle will finally live (cli.sh builds into a temp dir beside it, then renames).
const finalDir = path.join(root, 'dist', 'cli');

/**
 * Every chunk lands directly in the output directory, so `import.meta.url` in a source file is
 * rewritten to that file's own URL, computed relative to the chunk: `new URL('../../dist/launcher/',
 * import.meta.url)` in src/launcher/index.ts then finds the same directory from the bundle, and
 * main.ts's "am I the entry point" check says no (the bundle's entry below runs main instead).
 */
const sourceUrls: Plugin = {
  name: 'source-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\/src\/.*\.ts$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return { contents: text, loader: 'ts' };
      const rel = path.relative(finalDir, args.path).split(path.sep).join('/');
      return {
        contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`),
        loader: 'ts',
      };
    });
  },
};

/**
 * node:http and node:https are loaded with require() rather than import: an ESM import builds a
 * facade that reads every export, and node:http's lazy getters then pull in undici (~25 ms). A
 * CommonJS shim (`module.exports = require(...)`) lets esbuild read properties at use instead.
 * (Not for every built-in: esbuild's CommonJS interop copies each export's accessor, which costs
 * more than the facade of built-ins without lazy getters.)
 */
const BY_REQUIRE = new Set(['http', 'https', 'node:http', 'node:https']);
const builtinsByRequire: Plugin = {
  name: 'builtins-by-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?https?$/ }, (args) =>
      BY_REQUIRE.has(args.path) && args.namespace !== 'builtin'
        ? { path: args.path, namespace: 'builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(args.path)});`,
      loader: 'js',
    }));
  },
};

/**
 * zod re-exports every locale it ships (`z.locales`, ~60 languages, ~0.3 MB of the bundle that
 * every command parsing a CNB file loads); kiln only uses English, zod's default, which its
 * schemas module imports directly. zod's locales index becomes a module exporting only `en`.
 */
const zodEnglishOnly: Plugin = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, () => ({
      contents: "export { default as en } from './en.js';",
      loader: 'js',
    }));
  },
};

/**
 * zod compiles a parser per object schema (`new Function`) on its first parse: worth it for a
 * schema parsed thousands of times, ~0.1-0.3 ms each for kiln's, which parses most of its schemas
 * a few times per command (a no-op rebuild compiled dozens before its first phase). zod's
 * documented `jitless` setting makes every schema use its interpreted parser (the same results,
 * the same messages); it must hold before the first schema is built, so the bundle's zod starts
 * with it. The build fails if zod's code no longer has the line this relies on.
 */
const ZOD_CONFIG_INIT = '(_a.__zod_globalConfig = {})';
const zodJitless: Plugin = {
  name: 'zod-jitless',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]core[\\/]core\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!text.includes(ZOD_CONFIG_INIT))
        throw new Error(`${args.path}: no ${ZOD_CONFIG_INIT} to start jitless`);
      return {
        contents: text.replace(ZOD_CONFIG_INIT, '(_a.__zod_globalConfig = { jitless: true })'),
        loader: 'js',
      };
    });
  },
};

/**
 * The banner gives every chunk a `require` (CommonJS dependencies call it for Node.js built-ins),
 * but only the chunks that name `require` need one: each createRequire costs every start ~40 µs,
 * and a no-op rebuild loads ~55 chunks. Chunks whose code never mentions `require` (nothing else
 * can reach a module-scoped binding) lose the banner once written.
 */
const requireOnlyWhereUsed: Plugin = {
  name: 'require-only-where-used',
  setup(b) {
    const banner = b.initialOptions.banner?.js;
    b.onEnd(async (result) => {
      if (!banner || result.errors.length > 0 || !result.metafile) return;
      for (const file of Object.keys(result.metafile.outputs)) {
        if (!file.endsWith('.js')) continue;
        const abs = path.resolve(file); // metafile paths are relative to the working directory
        const text = await readFile(abs, 'utf8');
        if (!text.startsWith(`${banner}\n`)) throw new Error(`${abs}: does not start with the banner`);
        const body = text.slice(banner.length + 1);
        if (!/\brequire\b/.test(body)) await writeFile(abs, body);
      }
    });
  },
};

// The entry: what main.ts does when it is run as a script.
const entry = `import { runProcess } from './src/cli/main.ts';
await runProcess();
`;

const result = await build({
  stdin: { contents: entry, resolveDir: root, sourcefile: 'main.ts', loader: 'ts' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  outdir: out,
  entryNames: 'main',
  chunkNames: 'chunk-[hash]',
  // CommonJS dependencies call require() for Node.js built-ins; ESM output needs a real one.
  banner: {
    js: "import { createRequire as __kilnRequire } from 'node:module';\nconst require = __kilnRequire(import.meta.url);",
  },
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
  plugins: [sourceUrls, builtinsByRequire, zodEnglishOnly, zodJitless, requireOnlyWhereUsed],
});
await writeNotices(
  path.join(out, 'THIRD-PARTY-NOTICES'),
  "kiln's CLI bundle (dist/cli)",
  Object.keys(result.metafile.inputs),
  process.cwd(),
);
// Stamp the entry with the time the build started: a source saved while esbuild ran is then
// newer than the bundle, and bin/kiln falls back to the sources.
const started = Number(startedArg) / 1000;
await utimes(path.join(out, 'main.js'), started, started);
