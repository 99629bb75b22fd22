import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_SKIP, installDebLayer } from '../../_shared/debian/install.ts';
import { runImageInstalled } from '../../_shared/debian/run-image.ts';
import { prependPath, writeEnv } from '../../_shared/layer.ts';
import { BuildpackFailure } from '../../_shared/main.ts';
import type { Tool } from '../../_shared/sbom.ts';
import { rewriteRubyShebangs } from './shebang.ts';

// Debian's Ruby (`ruby`, i.e. ruby3.1 + libruby3.1 + Debian's rubygems) and bundler
// (`ruby-bundler`) unpacked by _shared/debian into the layer `ruby` (build + launch + cache): the
// run image has no Ruby, so the layer carries the interpreter and every library it loads that the
// run image lacks. Debian's Ruby is built for /usr: the layer's RbConfig finds its prefix from
// where rbconfig.rb is (TOPDIR), and RUBYLIB puts the layer's library directories in front of the
// compiled-in ones, so `ruby` runs from the layer at build and at launch.

// The gems Ruby 3.x no longer bundles, which libruby3.1 still depends on in Debian: an app gets
// them from its Gemfile (a copy here would shadow the Gemfile's version through RUBYLIB).
const NOT_SHIPPED = ['rake', 'ruby-webrick', 'ruby-net-telnet', 'ruby-xmlrpc', 'ruby-sdbm'];

/** Ruby is the installed runtime: the interpreter, bundler's entry point and versions. */
export interface Ruby {
  readonly layerDir: string;
  /** The interpreter binary, e.g. <layer>/usr/bin/ruby3.1. */
  readonly ruby: string;
  /** bundler's `bundle` script (run with `ruby`: its #! line names /usr/bin/env). */
  readonly bundle: string;
  /** The RUBY_API_VERSION directory name, e.g. 3.1.0. */
  readonly api: string;
  readonly version: string;
  readonly bundlerVersion: string;
  readonly reused: boolean;
  /** The Debian packages in the layer (a ruby-dev layer needs not carry them again). */
  readonly packages: readonly { readonly name: string; readonly version: string }[];
  /** The variables the layer's env files set, for running ruby in this build step. */
  readonly env: Readonly<Record<string, string>>;
}

export function triplet(env: NodeJS.ProcessEnv): string {
  return (env.KILN_DEBIAN_ARCH?.trim() || 'amd64') === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
}

async function only(dir: string, re: RegExp, what: string): Promise<string> {
  const found = (await readdir(dir).catch(() => [] as string[])).filter((n) => re.test(n)).sort();
  if (found.length === 0) throw new BuildpackFailure(`kiln/ruby: the ruby layer has no ${what} in ${dir}`);
  return found.at(-1)!;
}

/** installRuby installs ruby and ruby-bundler into the layer `ruby` and writes its environment. */
export async function installRuby(layersDir: string, env: NodeJS.ProcessEnv, tool: Tool): Promise<Ruby> {
  const layer = await installDebLayer({
    layersDir,
    layer: 'ruby',
    packages: ['ruby', 'ruby-bundler'],
    installed: await runImageInstalled(NOT_SHIPPED),
    types: { build: true, launch: true, cache: true },
    env,
    tool,
    contents: 'ruby-1',
    skip: DEFAULT_SKIP,
  });
  const dir = layer.dir;
  const arch = triplet(env);
  const bin = await only(join(dir, 'usr/bin'), /^ruby\d+\.\d+$/, 'ruby interpreter');
  const api = await only(join(dir, 'usr/lib/ruby'), /^\d+\.\d+\.\d+$/, 'standard library');
  const gems = join(dir, 'usr/share/rubygems-integration/all/gems');
  const bundler = await only(gems, /^bundler-\d/, 'bundler');
  const rubylib = [
    join(dir, 'usr/lib/ruby/vendor_ruby', api),
    join(dir, 'usr/lib', arch, 'ruby/vendor_ruby', api),
    join(dir, 'usr/lib/ruby/vendor_ruby'),
    join(dir, 'usr/lib/ruby', api),
    join(dir, 'usr/lib', arch, 'ruby', api),
    join(gems, bundler, 'lib'),
  ];
  await prependPath(dir, 'env', 'RUBYLIB', rubylib.join(':'));
  await prependPath(dir, 'env', 'PATH', join(dir, 'usr/bin'));
  await prependPath(
    dir,
    'env',
    'LD_LIBRARY_PATH',
    [join(dir, 'usr/lib', arch), join(dir, 'lib', arch)].join(':'),
  );
  const ruby = join(dir, 'usr/bin', bin);
  // `bundle`, `gem`, `irb`... name /usr/bin/ruby, which the run image lacks.
  await rewriteRubyShebangs([join(dir, 'usr/bin')], ruby);
  const bundlerVersion = bundler.slice('bundler-'.length);
  // Bundler 2.3 would otherwise try to download and switch to the version in BUNDLED WITH.
  await writeEnv(dir, 'env', 'BUNDLER_VERSION', 'override', bundlerVersion);
  const rubyPkg = layer.packages.find((p) => /^ruby\d+\.\d+$/.test(p.name));
  return {
    layerDir: dir,
    ruby,
    bundle: join(gems, bundler, 'exe/bundle'),
    api,
    version: rubyPkg?.version ?? bin,
    bundlerVersion,
    reused: layer.reused,
    packages: layer.packages,
    env: {
      RUBYLIB: [...rubylib, env.RUBYLIB].filter(Boolean).join(':'),
      PATH: [join(dir, 'usr/bin'), env.PATH].filter(Boolean).join(':'),
      LD_LIBRARY_PATH: [join(dir, 'usr/lib', arch), join(dir, 'lib', arch), env.LD_LIBRARY_PATH]
        .filter(Boolean)
        .join(':'),
      BUNDLER_VERSION: bundlerVersion,
    },
  };
}
