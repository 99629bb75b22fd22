import { detectContext } from '../../_shared/context.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';
import { readProcfile } from './procfile.ts';

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  const entries = await readProcfile(ctx.appDir);
  if (!entries || entries.length === 0) {
    log('kiln/procfile: looked for a Procfile with at least one "type: command" line: none found');
    return DETECT_FAIL;
  }
  await writeBuildPlan(ctx.planPath, {});
  return 0;
});
