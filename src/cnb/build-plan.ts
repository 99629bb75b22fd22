import { z } from 'zod';
import { parseTomlText } from './toml-file.ts';

/** A requirement of a detect build plan; `version` at the top level is only kept to reject it. */
export const Require = z
  .object({
    name: z.string().min(1, 'name must not be empty'),
    version: z.string().optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();
export type Require = z.output<typeof Require>;

/** A provision of a detect build plan. */
export const Provide = z.object({ name: z.string().min(1, 'name must not be empty') }).loose();
export type Provide = z.output<typeof Provide>;

const Sections = z
  .object({ provides: z.array(Provide).default([]), requires: z.array(Require).default([]) })
  .loose();
export type PlanSections = z.output<typeof Sections>;

/**
 * The schema of the build plan `bin/detect` writes to `$CNB_BUILD_PLAN_PATH` (`$2`): provides,
 * requires and `[[or]]` alternatives.
 */
export const DetectPlan = z
  .object({
    provides: z.array(Provide).default([]),
    requires: z.array(Require).default([]),
    or: z.array(Sections).default([]),
  })
  .loose();
export type DetectPlan = z.output<typeof DetectPlan>;

/** parseDetectPlan parses a detect build plan (an empty file is an empty plan). */
export function parseDetectPlan(text: string, path: string): DetectPlan {
  return parseTomlText(text, DetectPlan, path);
}

/**
 * topLevelVersionOf returns the name of the first requirement that uses a top-level `version`
 * key, which is an error since lifecycle 0.18 (Buildpack API 0.11 removed the glue): use
 * `metadata.version`.
 */
export function topLevelVersionOf(plan: DetectPlan): string | undefined {
  for (const section of [plan, ...plan.or]) {
    for (const r of section.requires) if (r.version !== undefined) return r.name;
  }
  return undefined;
}
