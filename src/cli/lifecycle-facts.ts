import { readFile } from 'node:fs/promises';
import type { LifecycleFacts } from '../platform/lifecycle-sbom.ts';
import { KILN_VERSION } from './context.ts';

// Apart from the attestation code: every build writes the lifecycle's own SBOM, and only some
// builds attest.

/** lifecycleFacts is kiln's version and its pinned npm dependencies (package.json), for its own SBOM. */
export async function lifecycleFacts(): Promise<LifecycleFacts> {
  let deps: Record<string, string> = {};
  try {
    // src/cli/ and the bundle's dist/cli/ are both two levels below the package root.
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    deps = pkg.dependencies ?? {};
  } catch {
    // An install without package.json lists kiln alone.
  }
  return {
    version: KILN_VERSION,
    dependencies: Object.entries(deps).map(([name, version]) => ({ name, version })),
  };
}
