import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../_shared/exec.ts';
import { exists, filesDigest } from '../../_shared/fsutil.ts';
import { prependPath, previousLayer, resetLayer, writeEnv, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log } from '../../_shared/main.ts';
import { type Component, type Tool, writeSboms } from '../../_shared/sbom.ts';
import { hasCompiler, installRubyDev } from './ruby-dev.ts';
import type { Ruby } from './runtime.ts';
import { rewriteRubyShebangs } from './shebang.ts';
import type { GemSource } from './source.ts';

// The Gemfile's gems go into the layer `gems` (build + launch + cache) as bundler's BUNDLE_PATH,
// keyed on what decides its contents: Gemfile and Gemfile.lock, Ruby and bundler, the groups left
// out and the gem source settings. The same key keeps the previous layer without asking the
// source anything. With a Gemfile.lock bundler runs frozen: the lock is the truth.
// Bundler's own state stays out of the image: its app config dir and user home (compact index
// cache) are the cache-only layer `bundle-home`, and the .gem copies bundler keeps are removed.

/** GemsRequest is what installGems needs from the build. */
export interface GemsRequest {
  readonly layersDir: string;
  readonly appDir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly ruby: Ruby;
  readonly source: GemSource;
  readonly tool: Tool;
}

/** installGems fills (or keeps) the `gems` layer; returns its directory. */
export async function installGems(o: GemsRequest): Promise<string> {
  const gemfile = join(o.appDir, 'Gemfile');
  const lock = join(o.appDir, 'Gemfile.lock');
  const locked = await exists(lock);
  const without = o.env.BUNDLE_WITHOUT?.trim() || 'development:test';
  const key = createHash('sha256')
    .update(await filesDigest([gemfile, lock]))
    .update(`\n${o.ruby.version}\n${o.ruby.bundlerVersion}\n${without}\n${o.source.digest}\n`)
    .digest('hex');
  const dir = join(o.layersDir, 'gems');
  const prev = await previousLayer(o.layersDir, 'gems');
  const common: Record<string, string> = {
    BUNDLE_PATH: dir,
    // An empty directory: an app's own .bundle/config (say BUNDLE_PATH: vendor/bundle) would
    // outrank these settings at launch (bundler: local config > env > global config).
    BUNDLE_APP_CONFIG: join(dir, 'kiln-app-config'),
    BUNDLE_GEMFILE: gemfile,
    BUNDLE_WITHOUT: without,
    ...(locked && { BUNDLE_FROZEN: 'true' }),
  };
  if (prev?.hasContents && prev.metadata.key === key && locked) {
    log('  reusing the gems layer (Gemfile.lock unchanged)');
  } else {
    await resetLayer(o.layersDir, 'gems');
    const home = join(o.layersDir, 'bundle-home');
    await mkdir(join(home, 'app-config'), { recursive: true });
    await writeLayerToml(o.layersDir, 'bundle-home', { cache: true }, {});
    const compiler = await hasCompiler(o.env);
    const dev = compiler ? await installRubyDev(o.layersDir, o.env, o.ruby, home, o.tool) : {};
    const env: NodeJS.ProcessEnv = {
      ...o.env,
      ...o.ruby.env,
      ...dev,
      ...common,
      ...o.source.env,
      // Where bundler may write its settings during the install (never shipped).
      BUNDLE_APP_CONFIG: join(home, 'app-config'),
      BUNDLE_USER_HOME: home,
      BUNDLE_SILENCE_ROOT_WARNING: 'true',
      BUNDLE_DISABLE_VERSION_CHECK: 'true',
    };
    log(`  bundle install (Debian bundler ${o.ruby.bundlerVersion}) from ${o.source.describe}`);
    const res = await run(o.ruby.ruby, [o.ruby.bundle, 'install'], { cwd: o.appDir, env });
    if (res.code !== 0) throw installFailure(res.tail, compiler);
    // Bundler keeps each .gem it installed: not needed to run, not shipped.
    await rm(join(dir, 'ruby', o.ruby.api, 'cache'), { recursive: true, force: true });
    await writeSboms(dir, await installedGems(join(dir, 'ruby', o.ruby.api)), o.tool, o.env);
  }
  await mkdir(common.BUNDLE_APP_CONFIG!, { recursive: true });
  for (const [name, value] of Object.entries(common)) await writeEnv(dir, 'env', name, 'override', value);
  // The gems' executables (`rackup`, `puma`, ...): on PATH, their #! lines the layer's ruby, and
  // their gems found without `bundle exec` (GEM_PATH; the trailing ":" keeps RubyGems' defaults).
  const bin = join(dir, 'ruby', o.ruby.api, 'bin');
  await rewriteRubyShebangs([bin], o.ruby.ruby);
  await prependPath(dir, 'env', 'PATH', bin);
  await writeEnv(dir, 'env', 'GEM_PATH', 'default', `${join(dir, 'ruby', o.ruby.api)}:`);
  await writeLayerToml(o.layersDir, 'gems', { build: true, launch: true, cache: true }, { key });
  return dir;
}

/** installFailure is the line after bundler's own error; a missing compiler is named as such. */
export function installFailure(tail: string, compiler: boolean): BuildpackFailure {
  if (!compiler && /Failed to build gem native extension/.test(tail))
    return new BuildpackFailure(
      'kiln/ruby failed at step "bundle install": a gem has a native extension and the build image has no C compiler (cc, make); use a builder whose build image has build-essential, or a precompiled platform gem',
    );
  return new BuildpackFailure('kiln/ruby failed at step "bundle install": see bundler\'s error above');
}

/** installedGems lists the gems of a bundler path (`specifications/*.gemspec`) as pkg:gem components. */
export async function installedGems(gemDir: string): Promise<Component[]> {
  const specs = join(gemDir, 'specifications');
  const out: Component[] = [];
  for (const f of (await readdir(specs).catch(() => [] as string[])).sort()) {
    if (!f.endsWith('.gemspec')) continue;
    const text = await readFile(join(specs, f), 'utf8').catch(() => '');
    const name = /\bs\.name\s*=\s*"([^"]+)"/.exec(text)?.[1];
    const version = /\bs\.version\s*=\s*"([^"]+)"/.exec(text)?.[1];
    if (!name || !version) continue;
    const platform = /\bs\.platform\s*=\s*"([^"]+)"/.exec(text)?.[1];
    const licenses = /\bs\.licenses\s*=\s*\[([^\]]*)\]/.exec(text)?.[1];
    const license = [...(licenses ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]).join(' OR ');
    const qualifier = platform && platform !== 'ruby' ? `?platform=${encodeURIComponent(platform)}` : '';
    out.push({
      name,
      version,
      purl: `pkg:gem/${encodeURIComponent(name)}@${encodeURIComponent(version)}${qualifier}`,
      type: 'library',
      ecosystem: 'gem',
      ...(license && { license }),
    });
  }
  return out;
}
