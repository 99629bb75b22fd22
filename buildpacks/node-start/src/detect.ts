import { join } from 'node:path';
import { detectContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';
import { ENTRY_FILES, startCommand } from './start.ts';

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  if (!(await exists(join(ctx.appDir, 'package.json')))) {
    log('kiln/node-start: looked for package.json: not found');
    return DETECT_FAIL;
  }
  if (!(await startCommand(ctx.appDir))) {
    log(
      `kiln/node-start: looked for scripts.start or main in package.json, or ${ENTRY_FILES.join(', ')}: none found`,
    );
    return DETECT_FAIL;
  }
  await writeBuildPlan(ctx.planPath, { requires: [{ name: 'node', metadata: { launch: true } }] });
  return 0;
});
