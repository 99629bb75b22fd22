// Child process of the fault tests: opens the E2E fixture at argv[2] and builds argv[3] as argv[4].
// With a phase name in argv[5] it prints "at <phase>" when it reaches that point and then hangs, so
// the parent can SIGKILL it exactly there. argv[6], when given, is the cache dir to use.
import { openE2E } from './build-fixture.ts';

const [root, app, image, killAt, cacheDir] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string?,
];
const w = await openE2E(root);
const r = await w.build(app, image, {
  ...(cacheDir ? { cacheDir } : {}),
  onPhase: async (phase) => {
    if (phase !== killAt) return;
    process.stdout.write(`at ${phase}\n`);
    setInterval(() => {}, 1000);
    await new Promise(() => {});
  },
});
process.stdout.write(`${JSON.stringify({ digest: r.digest, compressed: r.stats.compressed })}\n`);
