import { detectContext } from '../../_shared/context.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';
import { readVersionSources } from './sources.ts';

// Detect: any Node.js project (package.json, .nvmrc or .node-version). It always provides `node`
// (and, as the first alternative, `npm` for kiln/npm-install). It requires `node` itself only when
// the app pins a version, so a bare package.json needs another buildpack (start, npm) to ask for it.
main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  const sources = await readVersionSources(ctx.appDir, ctx.env);
  if (!sources.isNodeApp) {
    log('kiln/nodejs-engine: looked for package.json, .nvmrc or .node-version: none found');
    return DETECT_FAIL;
  }
  const first = sources.requests[0];
  const requires = first
    ? [{ name: 'node', metadata: { version: first.range ?? 'lts', 'version-source': first.source } }]
    : [];
  await writeBuildPlan(ctx.planPath, {
    provides: [{ name: 'node' }, { name: 'npm' }],
    requires,
    or: [{ provides: [{ name: 'node' }], requires }],
  });
  return 0;
});
