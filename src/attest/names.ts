// Names verification looks attestations and dependencies up by, apart from the modules that make
// them: `kiln verify` imports these without loading what builds artifacts (SBOM writers, image
// builders) or reads build metadata (the lifecycle labels' schemas).

export const CYCLONEDX_PREDICATE = 'https://cyclonedx.org/bom';
export const SPDX_PREDICATE = 'https://spdx.dev/Document';

/** The resource name of each dependency kind (verify and the policy look them up by name). */
export const DependencyName = {
  Builder: 'builder',
  BuildImage: 'build-image',
  RunImage: 'run-image',
  Launcher: 'launcher',
  Lifecycle: 'lifecycle',
} as const;
