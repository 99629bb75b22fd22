import { z } from 'zod';
import { type Order, OrderElement } from './buildpack-toml.ts';
import { readTomlFileIfExists, type TomlSource, writeTomlFile } from './toml-file.ts';

const SystemBuildpacks = z.object({ buildpacks: z.array(OrderElement).default([]) }).loose();

/** The schema of system.toml (Platform API 0.15, `/cnb/system.toml`): buildpacks around every group. */
export const SystemToml = z
  .object({
    system: z
      .object({ pre: SystemBuildpacks.optional(), post: SystemBuildpacks.optional() })
      .loose()
      .optional(),
  })
  .loose();
export type SystemToml = z.output<typeof SystemToml>;

/** readSystemToml reads system.toml; absent reads as undefined. */
export function readSystemToml(path: TomlSource): Promise<SystemToml | undefined> {
  return readTomlFileIfExists(path, SystemToml);
}

/** writeSystemToml writes system.toml atomically. */
export function writeSystemToml(path: string, value: SystemToml): Promise<void> {
  return writeTomlFile(path, value);
}

/**
 * withSystemBuildpacks puts the `pre` buildpacks at the start and the `post` buildpacks at the end
 * of every group, leaving out IDs the group already has (the reference lifecycle's
 * mergeSystemBuildpacks). `optional` is kept as the spec describes it.
 */
export function withSystemBuildpacks(order: Order, system: SystemToml | undefined): Order {
  const pre = system?.system?.pre?.buildpacks ?? [];
  const post = system?.system?.post?.buildpacks ?? [];
  if (pre.length === 0 && post.length === 0) return order;
  return order.map((g) => {
    const has = (id: string) => g.group.some((e) => e.id === id);
    return { ...g, group: [...pre.filter((e) => !has(e.id)), ...g.group, ...post.filter((e) => !has(e.id))] };
  });
}
