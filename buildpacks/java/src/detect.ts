import { join } from 'node:path';
import { detectContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { DETECT_FAIL, log, main } from '../../_shared/main.ts';
import { writeBuildPlan } from '../../_shared/plan.ts';

// pom.xml or mvnw: a Maven project. build.gradle(.kts) passes too, so that the build can say
// plainly that Gradle is not supported yet instead of "no buildpack detected".
const MARKERS = ['pom.xml', 'mvnw', 'build.gradle', 'build.gradle.kts'];

main(async () => {
  const ctx = detectContext(process.argv.slice(2), process.env, process.cwd());
  for (const m of MARKERS) {
    if (await exists(join(ctx.appDir, m))) {
      await writeBuildPlan(ctx.planPath, {
        provides: [{ name: 'jvm-application' }],
        requires: [{ name: 'jvm-application' }],
      });
      return 0;
    }
  }
  log('kiln/java: looked for pom.xml, mvnw, build.gradle or build.gradle.kts: none found');
  return DETECT_FAIL;
});
