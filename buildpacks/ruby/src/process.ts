import { join } from 'node:path';
import { exists } from '../../_shared/fsutil.ts';
import type { Process } from '../../_shared/launch.ts';

/** ENTRY_FILES are the conventional entry points run without a Procfile or config.ru. */
export const ENTRY_FILES = ['app.rb', 'main.rb', 'server.rb'];

/**
 * webProcess picks the default process the way Paketo's Ruby buildpacks do, without a shell (the
 * run image has none): a Procfile is kiln/procfile's (nothing here); config.ru runs the rackup
 * launcher (`rack: true`: the caller writes it) on 0.0.0.0 and $PORT; else app.rb/main.rb/server.rb
 * runs as `ruby -rbundler/setup <file>` (`bundle exec ruby <file>` in one process). The interpreter
 * is named by path.
 */
export async function webProcess(
  appDir: string,
  ruby: string,
  rackupLauncher: string,
): Promise<{ process: Process; describe: string; rack?: true } | undefined> {
  if (await exists(join(appDir, 'Procfile'))) return undefined;
  if (await exists(join(appDir, 'config.ru')))
    return {
      process: { type: 'web', command: [ruby, rackupLauncher], default: true },
      describe: 'rackup config.ru on 0.0.0.0 and $PORT (default 8080)',
      rack: true,
    };
  for (const f of ENTRY_FILES)
    if (await exists(join(appDir, f)))
      return {
        process: { type: 'web', command: [ruby, '-rbundler/setup', f], default: true },
        describe: `ruby -rbundler/setup ${f}`,
      };
  return undefined;
}
