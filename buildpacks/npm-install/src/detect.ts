import { detectContext } from '../../_shared/context.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';
import { readProject } from './project.ts';

// Detect: package.json with a lock file (package-lock.json, npm-shrinkwrap.json, pnpm-lock.yaml,
// yarn.lock), or package.json with dependencies but no lock file (then `npm install`).
main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  const project = await readProject(ctx.appDir);
  if (!project) {
    log('kiln/npm-install: looked for package.json: not found');
    return DETECT_FAIL;
  }
  if (!project.lockFile && project.dependencyCount === 0) {
    log('kiln/npm-install: looked for a lock file or dependencies in package.json: none found');
    return DETECT_FAIL;
  }
  await writeBuildPlan(ctx.planPath, {
    requires: [
      { name: 'node', metadata: { build: true, launch: true } },
      { name: 'npm', metadata: { build: true } },
    ],
  });
  return 0;
});
