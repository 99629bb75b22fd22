import { access, constants, readdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { installedPackages } from '../../_shared/debian/dpkg-status.ts';
import { DEFAULT_SKIP, installDebLayer } from '../../_shared/debian/install.ts';
import { writeFileAtomic } from '../../_shared/fsutil.ts';
import type { Tool } from '../../_shared/sbom.ts';
import { type Ruby, triplet } from './runtime.ts';

// Native extensions: when the build image has a C compiler (kiln's has build-essential), Debian's
// Ruby headers (`rubyX.Y-dev`) go into the build-only layer `ruby-dev`, never shipped. mkmf takes
// the header directories from RbConfig, whose prefix is the `ruby` layer (which has no headers):
// a prelude loaded through RUBYOPT into every ruby of `bundle install` (extconf.rb runs in a child
// ruby) points them at `ruby-dev`, and links against the `ruby` layer's libruby by file name (the
// unversioned libruby-X.Y.so link is a -dev file). The built extensions load libruby from the
// `ruby` layer at launch (LD_LIBRARY_PATH).

async function onPath(name: string, path: string | undefined): Promise<boolean> {
  for (const dir of (path ?? '').split(delimiter).filter(Boolean)) {
    try {
      await access(join(dir, name), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

/** hasCompiler says whether the build has `cc` (and `make`) for native extensions. */
export async function hasCompiler(env: NodeJS.ProcessEnv): Promise<boolean> {
  return (await onPath('cc', env.PATH)) && (await onPath('make', env.PATH));
}

/**
 * installRubyDev puts Ruby's headers in the build layer `ruby-dev` and writes the mkmf prelude
 * into `scratch`; returns the environment for `bundle install`.
 */
export async function installRubyDev(
  layersDir: string,
  env: NodeJS.ProcessEnv,
  ruby: Ruby,
  scratch: string,
  tool: Tool,
): Promise<Record<string, string>> {
  const installed = await installedPackages();
  for (const p of ruby.packages) installed.set(p.name, p.version);
  // Ruby's public headers do not include gmp.h: libgmp-dev is not needed to compile extensions.
  installed.set('libgmp-dev', '0');
  const rubyPkg = ruby.packages.find((p) => /^ruby\d+\.\d+$/.test(p.name))?.name ?? 'ruby3.1';
  const layer = await installDebLayer({
    layersDir,
    layer: 'ruby-dev',
    packages: [`${rubyPkg}-dev`],
    installed,
    types: { build: true, cache: true },
    env,
    tool,
    contents: 'ruby-dev-1',
    skip: DEFAULT_SKIP,
  });
  const include = join(layer.dir, 'usr/include');
  const hdr = (await readdir(include).catch(() => [] as string[])).find((n) => /^ruby-\d/.test(n));
  const arch = triplet(env);
  const prelude = join(scratch, 'kiln-mkmf.rb');
  const q = (s: string) => JSON.stringify(s);
  await writeFileAtomic(
    prelude,
    [
      "# Written by kiln/ruby: mkmf finds Ruby's headers in the build-only ruby-dev layer.",
      'require "rbconfig"',
      `{ "rubyhdrdir" => ${q(join(include, hdr ?? 'ruby'))}, "rubyarchhdrdir" => ${q(join(include, arch, hdr ?? 'ruby'))},`,
      '  "LIBRUBYARG_SHARED" => "-l:" + RbConfig::CONFIG["LIBRUBY_SO"] }.each do |k, v|',
      '  RbConfig::MAKEFILE_CONFIG[k] = v',
      '  RbConfig::CONFIG[k] = v',
      'end',
      '',
    ].join('\n'),
  );
  return { RUBYOPT: [`-r${prelude}`, env.RUBYOPT].filter(Boolean).join(' ') };
}
