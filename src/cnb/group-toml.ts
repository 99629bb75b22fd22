import { z } from 'zod';
import { readTomlFile, type TomlSource, writeTomlFile } from './toml-file.ts';

/** An element of group.toml: a buildpack that passed detection, with its API. */
export const GroupElement = z
  .object({
    id: z.string().min(1),
    version: z.string(),
    api: z.string().min(1, 'api is required'),
    homepage: z.string().optional(),
    optional: z.boolean().optional(),
    extension: z.boolean().optional(),
  })
  .loose();
export type GroupElement = z.output<typeof GroupElement>;

/** The schema of `<layers>/group.toml`. */
export const GroupToml = z
  .object({ group: z.array(GroupElement).default([]), 'group-extensions': z.array(GroupElement).optional() })
  .loose();
export type GroupToml = z.output<typeof GroupToml>;

/** readGroupToml reads group.toml. */
export function readGroupToml(path: TomlSource): Promise<GroupToml> {
  return readTomlFile(path, GroupToml);
}

/** writeGroupToml writes group.toml atomically. */
export function writeGroupToml(path: string, value: GroupToml): Promise<void> {
  return writeTomlFile(path, value);
}
