import { z } from 'zod';
import { readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

/** One entry of a Buildpack Plan: a requirement this buildpack is expected to meet. */
export const BuildpackPlanEntry = z
  .object({ name: z.string(), metadata: z.record(z.string(), z.unknown()).optional() })
  .loose();
export type BuildpackPlanEntry = z.output<typeof BuildpackPlanEntry>;

/** The schema of the Buildpack Plan given to `bin/build` as `$CNB_BP_PLAN_PATH` (`$3`). */
export const BuildpackPlan = z.object({ entries: z.array(BuildpackPlanEntry).default([]) }).loose();
export type BuildpackPlan = z.output<typeof BuildpackPlan>;

/** readBuildpackPlan reads a Buildpack Plan; absent reads as empty. */
export async function readBuildpackPlan(path: TomlSource): Promise<BuildpackPlan> {
  return (await readTomlFileIfExists(path, BuildpackPlan)) ?? { entries: [] };
}

/** writeBuildpackPlan writes a Buildpack Plan atomically. */
export function writeBuildpackPlan(path: string, plan: BuildpackPlan): Promise<void> {
  return writeTomlFile(path, {
    entries: plan.entries.map((e) => ({ name: e.name, metadata: e.metadata ?? {} })),
  });
}
