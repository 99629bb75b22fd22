import { buildContext } from '../../_shared/context.ts';
import { writeLaunchToml } from '../../_shared/launch.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import { readProcfile, toProcesses } from './procfile.ts';
import { foreignProgram } from './program-arch.ts';

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  let entries: Awaited<ReturnType<typeof readProcfile>>;
  try {
    entries = await readProcfile(ctx.appDir);
  } catch (err) {
    throw new BuildpackFailure((err as Error).message);
  }
  if (!entries?.length) throw new BuildpackFailure('Procfile not found or empty');
  const { processes, shellTypes } = toProcesses(entries);
  for (const p of processes) log(`  ${p.type}${p.default ? ' (default)' : ''}: ${p.command.join(' ')}`);
  const arch = ctx.env.CNB_TARGET_ARCH;
  for (const p of processes) {
    const other = await foreignProgram(ctx.appDir, p.command[0]!, arch);
    if (other)
      throw new BuildpackFailure(
        `Procfile ${p.type}: ${p.command[0]} is a program for ${other}, this image is for ${arch}: build it for ${arch} (a multi-platform build needs one per platform)`,
      );
  }
  for (const type of shellTypes) {
    log(
      `  warning: process "${type}" uses shell syntax and runs with /bin/sh -c; kiln's run image has no shell`,
    );
  }
  await writeLaunchToml(ctx.layersDir, processes);
  return 0;
});
