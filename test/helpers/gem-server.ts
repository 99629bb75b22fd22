import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { listenOnLoopback } from './loopback-server.ts';

// A RubyGems source on 127.0.0.1 serving gems the test builds with `gem build`: the directory
// `gem generate_index` writes (specs.4.8.gz, latest_specs.4.8.gz, prerelease_specs.4.8.gz,
// quick/Marshal.4.8/<gem>.gemspec.rz, gems/<gem>.gem), served as files. Bundler asks for the
// compact index (/versions) and the dependency API first; both answer 404 here, so it reads the
// full index, as it does from a plain static gem mirror.

const exec = promisify(execFile);

/** GemDef is one gem: its lib files (path below lib/ → source) and runtime dependencies. */
export interface GemDef {
  readonly name: string;
  readonly version: string;
  readonly files: Readonly<Record<string, string>>;
  readonly licenses?: readonly string[];
  readonly dependencies?: readonly (readonly [string, string])[];
  /** Files below ext/ (path → source); an `extconf.rb` among them makes a native-extension gem. */
  readonly ext?: Readonly<Record<string, string>>;
  /** Executables below bin/ (name → source). */
  readonly bin?: Readonly<Record<string, string>>;
}

/** gemAvailable is true when `gem` (RubyGems, from scripts/bootstrap.sh) is on PATH. */
export async function gemAvailable(): Promise<boolean> {
  return exec('gem', ['--version']).then(
    () => true,
    () => false,
  );
}

/** buildGem runs `gem build` on a gemspec for `g` in a scratch directory; returns the .gem path. */
export async function buildGem(g: GemDef, outDir: string): Promise<string> {
  const work = await mkdtemp(path.join(tmpdir(), `kiln-gem-${g.name}-`));
  try {
    const files: string[] = [];
    const entries = [
      ...Object.entries(g.files).map(([rel, text]) => [`lib/${rel}`, text] as const),
      ...Object.entries(g.ext ?? {}).map(([rel, text]) => [`ext/${rel}`, text] as const),
      ...Object.entries(g.bin ?? {}).map(([rel, text]) => [`bin/${rel}`, text] as const),
    ];
    for (const [rel, text] of entries) {
      const file = path.join(work, rel);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, text);
      files.push(rel);
    }
    const extensions = files.filter((f) => f.startsWith('ext/') && f.endsWith('/extconf.rb'));
    const spec = [
      'Gem::Specification.new do |s|',
      `  s.name = ${JSON.stringify(g.name)}`,
      `  s.version = ${JSON.stringify(g.version)}`,
      `  s.summary = ${JSON.stringify(`${g.name} built by a kiln test`)}`,
      '  s.authors = ["kiln"]',
      `  s.licenses = ${JSON.stringify(g.licenses ?? ['MIT'])}`,
      `  s.files = ${JSON.stringify(files.sort())}`,
      `  s.extensions = ${JSON.stringify(extensions)}`,
      '  s.bindir = "bin"',
      `  s.executables = ${JSON.stringify(Object.keys(g.bin ?? {}).sort())}`,
      ...(g.dependencies ?? []).map(
        ([n, r]) => `  s.add_runtime_dependency ${JSON.stringify(n)}, ${JSON.stringify(r)}`,
      ),
      'end',
      '',
    ].join('\n');
    await writeFile(path.join(work, `${g.name}.gemspec`), spec);
    await exec('gem', ['build', `${g.name}.gemspec`], {
      cwd: work,
      env: { ...process.env, SOURCE_DATE_EPOCH: '1700000000' },
    });
    const out = path.join(outDir, `${g.name}-${g.version}.gem`);
    await cp(path.join(work, `${g.name}-${g.version}.gem`), out);
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * debianGem describes the gem `name` from the files Debian's ruby-<name> installed on this host
 * (/usr/share/rubygems-integration): its lib/**.rb and its executables.
 */
export async function debianGem(name: string, licenses: readonly string[]): Promise<GemDef | undefined> {
  const base = '/usr/share/rubygems-integration/all/gems';
  const dir = (await readdir(base).catch(() => [] as string[])).find((d) =>
    new RegExp(`^${name}-\\d`).test(d),
  );
  if (!dir) return undefined;
  const files: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(path.join(base, dir, 'lib', rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else if (e.name.endsWith('.rb')) files[r] = await readFile(path.join(base, dir, 'lib', r), 'utf8');
    }
  };
  await walk('');
  const bin: Record<string, string> = {};
  for (const e of await readdir(path.join(base, dir, 'bin')).catch(() => [] as string[]))
    bin[e] = await readFile(path.join(base, dir, 'bin', e), 'utf8');
  return { name, version: dir.slice(name.length + 1), files, licenses, bin };
}

/** debianWebrick describes the webrick gem from the files of Debian's ruby-webrick on this host. */
export function debianWebrick(): Promise<GemDef | undefined> {
  return debianGem('webrick', ['Ruby', 'BSD-2-Clause']);
}

/** debianRack describes the rack gem (rack 2 has rackup) from Debian's ruby-rack on this host. */
export function debianRack(): Promise<GemDef | undefined> {
  return debianGem('rack', ['MIT']);
}

/** GemServer is a running gem source; `url` is what BUNDLE_MIRROR__ALL or a Gemfile `source` takes. */
export interface GemServer {
  readonly url: string;
  readonly port: number;
  readonly requests: string[];
  /** The Authorization headers received (credentials from a bundler binding reach the source). */
  readonly authorizations: string[];
  close(): Promise<void>;
}

/** startGemServer builds `gems`, indexes them with `gem generate_index` and serves them on 127.0.0.1. */
export async function startGemServer(gems: readonly GemDef[]): Promise<GemServer> {
  const root = await mkdtemp(path.join(tmpdir(), 'kiln-gem-server-'));
  await mkdir(path.join(root, 'gems'));
  for (const g of gems) await buildGem(g, path.join(root, 'gems'));
  await exec('gem', ['generate_index', '--directory', root]);
  const requests: string[] = [];
  const authorizations: string[] = [];
  const server = createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(p);
    if (req.headers.authorization) authorizations.push(req.headers.authorization);
    const rel = path.posix.normalize(p).replace(/^\/+/, '');
    if (rel.startsWith('..') || rel === '') return void res.writeHead(404).end('not found');
    readFile(path.join(root, rel)).then(
      (data) => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(data),
      () => res.writeHead(404).end('not found'),
    );
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    requests,
    authorizations,
    close: async () => {
      await close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
