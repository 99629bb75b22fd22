import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { detectContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';

// go.mod, or a top-level *.go file declaring `package main` (a module-less single-file program).
async function isGoApp(dir: string): Promise<boolean> {
  if (await exists(join(dir, 'go.mod'))) return true;
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (!f.endsWith('.go') || f.endsWith('_test.go')) continue;
    const text = await readFile(join(dir, f), 'utf8').catch(() => '');
    if (/^\s*package\s+main\b/m.test(text)) return true;
  }
  return false;
}

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  if (!(await isGoApp(ctx.appDir))) {
    log('kiln/go: looked for go.mod or *.go files with package main: none found');
    return DETECT_FAIL;
  }
  await writeBuildPlan(ctx.planPath, { provides: [{ name: 'go' }], requires: [{ name: 'go' }] });
  return 0;
});
