// THIRD-PARTY-NOTICES for a bundle: every npm package esbuild put into it, with its version, its
// declared license and the license text the package ships. A bundle is a copy of those packages
// (openpgp is LGPL, smol-toml BSD, the rest mostly MIT/ISC): their licenses ask that the copyright
// and licence text travel with every copy, and minified bundles without them would not carry it.
// The list comes from esbuild's metafile (what was bundled, not what package.json lists), so a
// dependency used only by tests never appears and a new transitive one never goes missing.
//
// Usage (scripts/build.d/buildpacks.sh): node scripts/build.d/third-party-notices.ts <out file>
//   <what the bundle is> <metafile.json>...   cli-bundle.ts imports writeNotices directly.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** BundledPackage is one npm package found among a bundle's inputs. */
export interface BundledPackage {
  readonly name: string;
  readonly version: string;
  readonly license: string;
  readonly source: string;
  /** The package's own licence files (LICENSE, COPYING, NOTICE, ...), name and text, sorted. */
  readonly texts: readonly { readonly file: string; readonly text: string }[];
}

/** esbuild's metafile: only the part read here. */
interface Metafile {
  readonly inputs: Readonly<Record<string, unknown>>;
}

const LICENSE_FILE = /^(licen[cs]e|copying|notice)([-._].*)?$/i;
const RULE = '='.repeat(78);

/**
 * packageDirs returns the package directories (as given, relative to `base` or absolute) of the
 * inputs that come from node_modules: the path up to the package's name after the last
 * `node_modules/` (a scoped name has two segments), so nested copies count as their own package.
 */
export function packageDirs(inputs: Iterable<string>): string[] {
  const dirs = new Set<string>();
  for (const input of inputs) {
    const at = input.lastIndexOf('node_modules/');
    if (at < 0) continue;
    const parts = input.slice(at + 'node_modules/'.length).split('/');
    const nameParts = parts[0]?.startsWith('@') ? 2 : 1;
    if (parts.length <= nameParts) continue;
    dirs.add(input.slice(0, at) + ['node_modules', ...parts.slice(0, nameParts)].join('/'));
  }
  return [...dirs];
}

/** readPackage reads one package's notice facts from its directory. */
export async function readPackage(dir: string): Promise<BundledPackage> {
  const manifest = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const name = typeof manifest.name === 'string' ? manifest.name : '';
  const version = typeof manifest.version === 'string' ? manifest.version : '';
  if (!name || !version) throw new Error(`${dir}/package.json: expected a name and a version`);
  const lic = manifest.license as unknown;
  const license =
    typeof lic === 'string'
      ? lic
      : typeof (lic as { type?: unknown })?.type === 'string'
        ? (lic as { type: string }).type
        : '';
  const repo = manifest.repository as unknown;
  const repoUrl = typeof repo === 'string' ? repo : (repo as { url?: unknown })?.url;
  const source =
    typeof repoUrl === 'string'
      ? repoUrl.replace(/^git\+/, '')
      : typeof manifest.homepage === 'string'
        ? manifest.homepage
        : '';
  const files = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && LICENSE_FILE.test(e.name))
    .map((e) => e.name)
    .sort();
  const texts = await Promise.all(
    files.map(async (file) => ({ file, text: (await readFile(path.join(dir, file), 'utf8')).trimEnd() })),
  );
  return { name, version, license: license || 'UNKNOWN (package.json declares none)', source, texts };
}

/** formatNotices renders the notices file: one section per package, sorted by name and version. */
export function formatNotices(what: string, packages: readonly BundledPackage[]): string {
  const sorted = [...packages].sort((a, b) =>
    a.name === b.name ? (a.version < b.version ? -1 : 1) : a.name < b.name ? -1 : 1,
  );
  const out = [
    `Third-party notices for ${what}`,
    '',
    'It contains code from the npm packages listed below, each under its own license.',
    "Generated at build time from the bundler's inputs by scripts/build.d/third-party-notices.ts.",
    '',
    ...sorted.map((p) => `  ${p.name} ${p.version} (${p.license})`),
  ];
  for (const p of sorted) {
    out.push('', RULE, `${p.name} ${p.version}`, `License: ${p.license}`);
    if (p.source) out.push(`Source: ${p.source}`);
    out.push(RULE);
    if (p.texts.length === 0) {
      out.push(
        '',
        'The package ships no license file; its package.json declares the license above. The',
        'bundle keeps the legal comments of its code (copyright and license lines) where it has them.',
      );
    }
    for (const t of p.texts) out.push('', `--- ${t.file} ---`, '', t.text);
  }
  return `${out.join('\n')}\n`;
}

/**
 * writeNotices writes `outFile` for a bundle whose esbuild metafile inputs are `inputs` (paths
 * relative to `base`, esbuild's working directory). Returns the packages it lists.
 */
export async function writeNotices(
  outFile: string,
  what: string,
  inputs: Iterable<string>,
  base: string,
): Promise<BundledPackage[]> {
  const packages = await Promise.all(packageDirs(inputs).map((d) => readPackage(path.resolve(base, d))));
  // The same package reached through two paths (a hoisted and a nested copy of one version) once.
  const unique = [...new Map(packages.map((p) => [`${p.name}@${p.version}`, p])).values()];
  await writeFile(outFile, formatNotices(what, unique));
  return unique;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [outFile, what, ...metafiles] = process.argv.slice(2);
  if (!outFile || !what || metafiles.length === 0)
    throw new Error('usage: third-party-notices.ts <out file> <what the bundle is> <metafile.json>...');
  const inputs: string[] = [];
  for (const m of metafiles)
    inputs.push(...Object.keys((JSON.parse(await readFile(m, 'utf8')) as Metafile).inputs));
  await writeNotices(outFile, what, inputs, process.cwd());
}
