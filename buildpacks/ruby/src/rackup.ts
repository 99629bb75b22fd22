import { join } from 'node:path';
import { writeFileAtomic } from '../../_shared/fsutil.ts';

// config.ru apps start rackup on the port PORT names at run time (default 8080). The run image has
// no shell to expand `--port $PORT` in a process command, so a small Ruby launcher in the gems
// layer reads PORT itself and runs the bundle's `rackup` executable in the same process, as
// `bundle exec rackup` would: rack 2's own, or the `rackup` gem's next to rack 3.

/** RACKUP_LAUNCHER is the launcher's file name in the gems layer. */
export const RACKUP_LAUNCHER = 'kiln-rackup.rb';

const SOURCE = `# Written by kiln/ruby: \`bundle exec rackup\` on 0.0.0.0 and the port PORT names (default 8080),
# read here because the run image has no shell to expand $PORT. Arguments given to the process
# come after these options (rackup takes the last of a repeated option).
require "bundler/setup"

port = ENV.fetch("PORT", "").strip
port = "8080" if port.empty?
unless port.match?(/\\A[0-9]{1,5}\\z/) && port.to_i.between?(1, 65_535)
  abort "kiln/ruby: PORT #{port.inspect} is not a port number (1-65535)"
end
spec = Gem.loaded_specs.values.find { |s| s.executables.include?("rackup") }
abort "kiln/ruby: config.ru needs rackup: add the rack gem (rack < 3) or the rackup gem to the Gemfile" unless spec
args = ["--host", "0.0.0.0", "--port", port, *ARGV]
args << "config.ru" unless ARGV.any? { |a| a.end_with?(".ru") }
ARGV.replace(args)
$0 = "rackup"
load spec.bin_file("rackup")
`;

/** writeRackupLauncher writes the launcher into the gems layer `dir`; returns its path. */
export async function writeRackupLauncher(dir: string): Promise<string> {
  const file = join(dir, RACKUP_LAUNCHER);
  await writeFileAtomic(file, SOURCE, 0o644);
  return file;
}
