import { buildContext } from '../../_shared/context.ts';
import { writeLaunchToml } from '../../_shared/launch.ts';
import { resetLayer, writeEnv, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import { startCommand } from './start.ts';

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  const start = await startCommand(ctx.appDir);
  if (!start) throw new BuildpackFailure('no start script, main or entry file to start the app with');
  if (start.warning) log(`  warning: ${start.warning}`);
  log(`  web: ${start.command.join(' ')} (from ${start.source})`);
  // Launch-time defaults only: the user's own NODE_ENV or PORT (e.g. `kiln run -e PORT=3000`) wins.
  const env = await resetLayer(ctx.layersDir, 'launch-env');
  await writeEnv(env, 'env.launch', 'NODE_ENV', 'default', 'production');
  await writeEnv(env, 'env.launch', 'PORT', 'default', '8080');
  await writeLayerToml(ctx.layersDir, 'launch-env', { launch: true }, {});
  await writeLaunchToml(ctx.layersDir, [{ type: 'web', command: start.command, default: true }]);
  return 0;
});
