import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildContext } from '../../_shared/context.ts';
import { writeLaunchToml } from '../../_shared/launch.ts';
import { writeEnv } from '../../_shared/layer.ts';
import { log, main } from '../../_shared/main.ts';
import { installGems } from './gems.ts';
import { webProcess } from './process.ts';
import { RACKUP_LAUNCHER, writeRackupLauncher } from './rackup.ts';
import { installRuby } from './runtime.ts';
import { gemSource } from './source.ts';

const TOOL = { name: 'kiln/ruby', version: '0.1.0' };

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  // The source settings are checked first: a bad mirror URL fails before any download.
  const source = await gemSource(ctx.env, ctx.platformDir);
  const ruby = await installRuby(ctx.layersDir, ctx.env, TOOL);
  log(`  Ruby ${ruby.version} and bundler ${ruby.bundlerVersion} from Debian`);
  const gems = await installGems({
    layersDir: ctx.layersDir,
    appDir: ctx.appDir,
    env: ctx.env,
    ruby,
    source,
    tool: TOOL,
  });
  const web = await webProcess(ctx.appDir, ruby.ruby, join(gems, RACKUP_LAUNCHER));
  if (web) {
    log(`  web: ${web.describe}`);
    if (web.rack) await writeRackupLauncher(gems);
    await writeEnv(gems, 'env.launch', 'PORT', 'default', '8080');
    await writeEnv(gems, 'env.launch', 'RACK_ENV', 'default', 'production');
    await writeLaunchToml(ctx.layersDir, [web.process]);
  }
  // A reused gems layer may hold the launcher of a config.ru the app no longer has.
  if (!web?.rack) await rm(join(gems, RACKUP_LAUNCHER), { force: true });
  return 0;
});
