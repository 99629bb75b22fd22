import { installedPackages } from './dpkg-status.ts';

// What the default run image has (stacks/bookworm/stack.toml [run]): a launch layer must not carry
// another libc. Versions are the build image's: both images come from the same stack lock.
export const RUN_IMAGE_PACKAGES: readonly string[] = [
  'base-files',
  'netbase',
  'tzdata',
  'ca-certificates',
  'libc6',
  'libgcc-s1',
  'gcc-12-base',
  'libstdc++6',
  'libatomic1',
  'libssl3',
  'zlib1g',
];

/**
 * runImageInstalled is the `installed` set for a launch layer: the run image's packages (at the
 * build image's versions) plus `notShipped`, dependencies the caller leaves out on purpose.
 */
export async function runImageInstalled(notShipped: readonly string[]): Promise<Map<string, string>> {
  const image = await installedPackages();
  const installed = new Map<string, string>();
  for (const n of RUN_IMAGE_PACKAGES) installed.set(n, image.get(n) ?? '0');
  for (const n of notShipped) installed.set(n, '0');
  return installed;
}
