import { join } from 'node:path';
import { detectContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';
import { readProcfile, runsNode } from './procfile.ts';

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  const entries = await readProcfile(ctx.appDir);
  if (!entries || entries.length === 0) {
    log('kiln/procfile: looked for a Procfile with at least one "type: command" line: none found');
    return DETECT_FAIL;
  }
  // A process that starts `node` in a Node.js project needs Node.js at launch: asking for it keeps
  // kiln/nodejs-engine in the group even when nothing else (a start script, dependencies) does.
  // Outside a Node.js project nothing would provide it, so nothing is asked (a prebuilt binary
  // app keeps building; kiln's launch check then names what is missing).
  const nodeProject =
    (await exists(join(ctx.appDir, 'package.json'))) ||
    (await exists(join(ctx.appDir, '.nvmrc'))) ||
    (await exists(join(ctx.appDir, '.node-version')));
  const node = entries.filter(runsNode).map((e) => e.type);
  if (nodeProject && node.length > 0) {
    log(`kiln/procfile: process ${node.join(', ')} runs node: requiring Node.js at launch`);
    await writeBuildPlan(ctx.planPath, { requires: [{ name: 'node', metadata: { launch: true } }] });
    return 0;
  }
  await writeBuildPlan(ctx.planPath, {});
  return 0;
});
