import type { Digest } from '../oci/digest.ts';
import { imageSubject, imageUri, type ResourceDescriptor, type Statement, statement } from './statement.ts';

// SLSA Provenance v1 (https://slsa.dev/spec/v1.0/provenance) for kiln builds and rebases. The
// build types are kiln's own and documented in docs/supply-chain.md ("Build types"): what
// externalParameters hold, so a verifier knows which inputs a user chose.

export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
/** `kiln build`: source + builder + buildpacks -> app image. */
export const KILN_BUILD_TYPE = 'https://kiln.invalid/buildtypes/cnb-build/v1';
/** `kiln rebase`: an app image put on another run image. */
export const KILN_REBASE_TYPE = 'https://kiln.invalid/buildtypes/cnb-rebase/v1';
/** runDetails.builder.id of a kiln CLI run. */
export const KILN_BUILDER_ID = 'https://kiln.invalid/builders/kiln-cli';

/** Where the app came from: a git checkout (with the tree built) or only the tree. */
export interface SourceFacts {
  /** sha256 of the app tree after project.toml include/exclude (see source.ts). */
  readonly treeDigest: Digest;
  readonly git?: {
    /** The remote's URL, credentials removed. */
    readonly repository: string;
    readonly commit: string;
    /** The app dir inside the checkout ('' at its root). */
    readonly path: string;
  };
}

/** How a run looked: who ran it and when (may differ between runs; the image does not). */
export interface RunFacts {
  readonly invocationId: string;
  readonly startedOn: Date;
  readonly finishedOn: Date;
  readonly kilnVersion: string;
}

/** Everything the build provenance says, gathered by the caller. */
export interface BuildFacts {
  readonly image: { readonly name: string; readonly digest: Digest };
  readonly source: SourceFacts;
  readonly projectDescriptor?: { readonly path: string; readonly digest: Digest };
  /** The builder as the user named it. */
  readonly builder: string;
  /** The run image as chosen (`--run-image`, project.toml), if chosen. */
  readonly runImage?: string;
  /** `--buildpack` / project.toml group references, as given. */
  readonly buildpacks: readonly string[];
  /** Names of the build-time env variables (never their values). */
  readonly envNames: readonly string[];
  /** Flags that change the image (compression, default process, exec env, epoch, ...). */
  readonly options: Readonly<Record<string, string | boolean | number>>;
  readonly platformApi: string;
  readonly dependencies: readonly ResourceDescriptor[];
  /** Other outputs worth naming (e.g. the lifecycle's own SBOM). */
  readonly byproducts?: readonly ResourceDescriptor[];
  readonly run: RunFacts;
}

export interface ProvenancePredicate {
  readonly buildDefinition: {
    readonly buildType: string;
    readonly externalParameters: Readonly<Record<string, unknown>>;
    readonly internalParameters?: Readonly<Record<string, unknown>>;
    readonly resolvedDependencies?: readonly ResourceDescriptor[];
  };
  readonly runDetails: {
    readonly builder: { readonly id: string; readonly version?: Readonly<Record<string, string>> };
    readonly metadata?: {
      readonly invocationId?: string;
      readonly startedOn?: string;
      readonly finishedOn?: string;
    };
    readonly byproducts?: readonly ResourceDescriptor[];
  };
}

export type Provenance = Statement<ProvenancePredicate>;

const sorted = (xs: readonly string[]) => [...new Set(xs)].sort();

function sourceParameter(s: SourceFacts): Record<string, unknown> {
  return {
    tree: { digest: { sha256: s.treeDigest.slice('sha256:'.length) } },
    ...(s.git
      ? {
          git: {
            uri: `git+${s.git.repository}@${s.git.commit}`,
            repository: s.git.repository,
            commit: s.git.commit,
            ...(s.git.path ? { path: s.git.path } : {}),
          },
        }
      : {}),
  };
}

function runDetails(
  run: RunFacts,
  byproducts?: readonly ResourceDescriptor[],
): ProvenancePredicate['runDetails'] {
  return {
    builder: { id: KILN_BUILDER_ID, version: { kiln: run.kilnVersion } },
    metadata: {
      invocationId: run.invocationId,
      startedOn: run.startedOn.toISOString(),
      finishedOn: run.finishedOn.toISOString(),
    },
    ...(byproducts?.length ? { byproducts } : {}),
  };
}

/** buildProvenance is the in-toto statement of one `kiln build`. */
export function buildProvenance(f: BuildFacts): Provenance {
  return statement(imageSubject(f.image.name, f.image.digest), SLSA_PROVENANCE_V1, {
    buildDefinition: {
      buildType: KILN_BUILD_TYPE,
      externalParameters: {
        source: sourceParameter(f.source),
        ...(f.projectDescriptor
          ? {
              projectDescriptor: {
                path: f.projectDescriptor.path,
                digest: { sha256: f.projectDescriptor.digest.slice('sha256:'.length) },
              },
            }
          : {}),
        builder: f.builder,
        ...(f.runImage ? { runImage: f.runImage } : {}),
        buildpacks: [...f.buildpacks],
        env: sorted(f.envNames),
        options: { ...f.options },
      },
      internalParameters: { kilnVersion: f.run.kilnVersion, platformApi: f.platformApi },
      resolvedDependencies: [...f.dependencies],
    },
    runDetails: runDetails(f.run, f.byproducts),
  });
}

/** What a rebase provenance says. */
export interface RebaseFacts {
  readonly image: { readonly name: string; readonly digest: Digest };
  /** The app image rebased (its digest before). */
  readonly input: { readonly reference: string; readonly digest: Digest };
  readonly oldRunImage: ResourceDescriptor;
  readonly newRunImage: { readonly reference: string; readonly digest: Digest };
  readonly force: boolean;
  readonly run: RunFacts;
}

/** rebaseProvenance is the in-toto statement of one `kiln rebase`. */
export function rebaseProvenance(f: RebaseFacts): Provenance {
  const input: ResourceDescriptor = {
    uri: imageUri(f.input.reference),
    name: 'app-image',
    digest: { sha256: f.input.digest.slice('sha256:'.length) },
  };
  const newRun: ResourceDescriptor = {
    uri: imageUri(f.newRunImage.reference),
    name: 'run-image',
    digest: { sha256: f.newRunImage.digest.slice('sha256:'.length) },
  };
  return statement(imageSubject(f.image.name, f.image.digest), SLSA_PROVENANCE_V1, {
    buildDefinition: {
      buildType: KILN_REBASE_TYPE,
      externalParameters: { image: f.input.reference, runImage: f.newRunImage.reference, force: f.force },
      internalParameters: { kilnVersion: f.run.kilnVersion },
      resolvedDependencies: [input, { ...f.oldRunImage, name: 'previous-run-image' }, newRun],
    },
    runDetails: runDetails(f.run),
  });
}
