import { z } from 'zod';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

const Provider = z.object({ id: z.string(), version: z.string(), extension: z.boolean().optional() }).loose();
const PlanRequire = z
  .object({ name: z.string(), metadata: z.record(z.string(), z.unknown()).optional() })
  .loose();

/** One dependency of plan.toml: who provides it and every requirement for it. */
export const PlanEntry = z
  .object({
    providers: z.array(Provider).min(1, 'at least one provider is required'),
    requires: z.array(PlanRequire).min(1, 'at least one require is required'),
  })
  .loose();
export type PlanEntry = z.output<typeof PlanEntry>;

/** The schema of `<layers>/plan.toml` written by the detector. */
export const PlanToml = z.object({ entries: z.array(PlanEntry).default([]) }).loose();
export type PlanToml = z.output<typeof PlanToml>;

/** readPlanToml reads plan.toml. */
export function readPlanToml(path: TomlSource): Promise<PlanToml> {
  return readTomlFile(path, PlanToml);
}

/** writePlanToml writes plan.toml atomically. */
export function writePlanToml(path: string, value: PlanToml): Promise<void> {
  return writeTomlFile(path, value);
}

/** planFor returns the requirements of every entry the given buildpack provides (lifecycle `Plan.Find`). */
export function planFor(plan: PlanToml, id: string): { name: string; metadata?: Record<string, unknown> }[] {
  const out: { name: string; metadata?: Record<string, unknown> }[] = [];
  for (const entry of plan.entries) {
    if (entry.providers.some((p) => p.id === id && !p.extension)) out.push(...entry.requires);
  }
  return out;
}

/** withoutMet drops every entry one of whose requirements is named in `met` (lifecycle `Plan.Filter`). */
export function withoutMet(plan: PlanToml, met: readonly string[]): PlanToml {
  return { entries: plan.entries.filter((e) => !e.requires.some((r) => met.includes(r.name))) };
}
