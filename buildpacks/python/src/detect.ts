import { detectContext } from '../../_shared/context.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';
import { isPythonApp, MARKERS } from './project.ts';

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  if (!(await isPythonApp(ctx.appDir))) {
    log(`kiln/python: looked for ${MARKERS.join(', ')}: none found`);
    return DETECT_FAIL;
  }
  await writeBuildPlan(ctx.planPath, {
    provides: [{ name: 'python' }],
    requires: [{ name: 'python', metadata: { launch: true } }],
  });
  return 0;
});
