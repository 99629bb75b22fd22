import { join } from 'node:path';
import { detectContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  if (!(await exists(join(ctx.appDir, 'Gemfile')))) {
    log('kiln/ruby: looked for Gemfile: none found');
    return DETECT_FAIL;
  }
  await writeBuildPlan(ctx.planPath, {
    provides: [{ name: 'ruby' }],
    requires: [{ name: 'ruby', metadata: { launch: true } }],
  });
  return 0;
});
