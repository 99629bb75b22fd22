import { join } from 'node:path';
import { exists } from '../../_shared/fsutil.ts';
import type { Process } from '../../_shared/launch.ts';

/** ENTRY_FILES are the conventional entry points run without a Procfile or config.ru. */
export const ENTRY_FILES = ['app.rb', 'main.rb', 'server.rb'];

/**
 * webProcess picks the default process the way Paketo's Ruby buildpacks do, without a shell (the
 * run image has none): a Procfile is kiln/procfile's (nothing here); config.ru runs
 * `bundle exec rackup` on 0.0.0.0:8080; else app.rb/main.rb/server.rb runs as
 * `ruby -rbundler/setup <file>` (`bundle exec ruby <file>` in one process). Interpreter and bundler
 * are named by path: the run image has no /usr/bin/ruby for their #! lines.
 */
export async function webProcess(
  appDir: string,
  ruby: string,
  bundle: string,
): Promise<{ process: Process; describe: string } | undefined> {
  if (await exists(join(appDir, 'Procfile'))) return undefined;
  if (await exists(join(appDir, 'config.ru')))
    return {
      process: {
        type: 'web',
        command: [ruby, bundle, 'exec', 'rackup', '--host', '0.0.0.0', '--port', '8080', 'config.ru'],
        default: true,
      },
      describe: 'bundle exec rackup config.ru (port 8080)',
    };
  for (const f of ENTRY_FILES)
    if (await exists(join(appDir, f)))
      return {
        process: { type: 'web', command: [ruby, '-rbundler/setup', f], default: true },
        describe: `ruby -rbundler/setup ${f}`,
      };
  return undefined;
}
