import { writeFile } from 'node:fs/promises';
import { stringify } from 'smol-toml';
import { readToml } from './toml.ts';

/** Require is one `[[requires]]` entry of a Build Plan. */
export interface Require {
  readonly name: string;
  readonly metadata?: Record<string, unknown>;
}

/** BuildPlan is what `bin/detect` writes: provides, requires and alternative `[[or]]` sections. */
export interface BuildPlan {
  readonly provides?: readonly { readonly name: string }[];
  readonly requires?: readonly Require[];
  readonly or?: readonly {
    readonly provides?: readonly { readonly name: string }[];
    readonly requires?: readonly Require[];
  }[];
}

/**
 * writeBuildPlan writes the detect output to CNB_BUILD_PLAN_PATH. In place, not through a temp
 * file: the platform hands over one writable file in a directory the buildpack may not write.
 */
export async function writeBuildPlan(path: string, plan: BuildPlan): Promise<void> {
  await writeFile(path, `${stringify(plan as Record<string, unknown>)}\n`);
}

/** PlanEntry is one `[[entries]]` entry of the Buildpack Plan given to `bin/build`. */
export interface PlanEntry {
  readonly name: string;
  readonly metadata: Record<string, unknown>;
}

/** readBuildpackPlan reads the entries this buildpack was asked to meet. */
export async function readBuildpackPlan(path: string): Promise<PlanEntry[]> {
  const doc = await readToml(path);
  const entries = (doc?.entries as { name?: unknown; metadata?: unknown }[] | undefined) ?? [];
  return entries.map((e) => ({
    name: String(e.name),
    metadata: (e.metadata as Record<string, unknown> | undefined) ?? {},
  }));
}
