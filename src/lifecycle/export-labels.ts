import {
  BUILD_METADATA_LABEL,
  BUILD_USER_LABEL,
  type BuildMetadata as BuildMetadataLabel,
  type BuildMetadataProcess,
  type BuildpackLayersMetadata,
  LIFECYCLE_METADATA_LABEL,
  type LifecycleMetadata,
  PROJECT_METADATA_LABEL,
  type ProjectMetadata,
  stringifyLabel,
} from '../cnb/lifecycle-metadata.ts';
import type { BuildMetadata } from '../cnb/metadata.ts';
import type { LauncherInfo } from '../launcher/index.ts';

// The labels of an app image: `io.buildpacks.lifecycle.metadata` (what the next build reuses and
// rebase reads), `io.buildpacks.build.metadata` (buildpacks, processes, launcher),
// `io.buildpacks.project.metadata`, the buildpacks' own labels, exec-env and the build user.

/** The diffIDs export resolved, by the part of the image they belong to. */
export interface ExportedShas {
  readonly app: readonly { sha: string }[];
  readonly config: string;
  readonly launcher: string;
  readonly processTypes: string;
  readonly sbom?: string;
  readonly buildpacks: readonly BuildpackLayersMetadata[];
}

/** The run image as the lifecycle label records it. */
export interface RunImageFacts {
  /** The run image's top layer diffID. */
  readonly topLayer: string;
  /** A digest reference or image ID. */
  readonly reference: string;
  readonly name?: string;
  readonly mirrors?: readonly string[];
}

/** lifecycleMetadata is the `io.buildpacks.lifecycle.metadata` label's value. */
export function lifecycleMetadata(shas: ExportedShas, run: RunImageFacts): LifecycleMetadata {
  const runImage: { image?: string; mirrors?: string[] } = {};
  if (run.name) runImage.image = run.name;
  if (run.mirrors?.length) runImage.mirrors = [...run.mirrors];
  const metadata: LifecycleMetadata = {
    app: [...shas.app],
    config: { sha: shas.config },
    launcher: { sha: shas.launcher },
    'process-types': { sha: shas.processTypes },
    buildpacks: [...shas.buildpacks],
    runImage: { topLayer: run.topLayer, reference: run.reference, ...runImage },
    stack: { runImage },
  };
  if (shas.sbom) metadata.sbom = { sha: shas.sbom };
  return metadata;
}

/** buildMetadata is the `io.buildpacks.build.metadata` label's value. */
export function buildMetadata(
  md: BuildMetadata,
  launcher: LauncherInfo,
  source?: { readonly repository: string; readonly commit: string },
): BuildMetadataLabel {
  const out: BuildMetadataLabel = {
    bom: [],
    buildpacks: md.buildpacks.map((b) => {
      const bp: { id: string; version: string; homepage?: string } = { id: b.id, version: b.version };
      if (b.homepage) bp.homepage = b.homepage;
      return bp;
    }),
    launcher: {
      version: launcher.version,
      source: { git: { repository: source?.repository ?? '', commit: source?.commit ?? '' } },
    },
    processes: md.processes.map((p) => {
      const proc: BuildMetadataProcess = {
        type: p.type,
        command: p.command,
        args: p.args,
        direct: p.direct,
        buildpackID: p['buildpack-id'],
      };
      if (p['working-dir']) proc['working-dir'] = p['working-dir'];
      if (p['exec-env']) proc['exec-env'] = p['exec-env'];
      return proc;
    }),
  };
  if (md['buildpack-default-process-type'])
    out['buildpack-default-process-type'] = md['buildpack-default-process-type'];
  return out;
}

/** What appLabels puts on top of the run image's labels. */
export interface LabelInputs {
  readonly metadata: LifecycleMetadata;
  readonly buildMetadata: BuildMetadataLabel;
  readonly project?: ProjectMetadata;
  /** Labels the buildpacks asked for (launch.toml `[[labels]]`). */
  readonly buildpackLabels: readonly { readonly key: string; readonly value: string }[];
  readonly execEnv?: string;
  readonly uid: number;
  readonly gid: number;
  /** Told about buildpack labels that are refused. */
  readonly warn?: (line: string) => void;
}

/** appLabels is the app image's label set: the run image's, then the lifecycle's, in this order. */
export function appLabels(
  runLabels: Readonly<Record<string, string>>,
  i: LabelInputs,
): Record<string, string> {
  const labels: Record<string, string> = { ...runLabels };
  labels[LIFECYCLE_METADATA_LABEL] = stringifyLabel(i.metadata);
  labels[BUILD_METADATA_LABEL] = stringifyLabel(i.buildMetadata);
  labels[PROJECT_METADATA_LABEL] = stringifyLabel(i.project ?? {});
  for (const l of i.buildpackLabels) {
    // io.buildpacks.* and io.kiln.* are the platform's: a buildpack rewriting the lifecycle
    // metadata would steer the next build's restore and rebase, a base id or rebasable flag rebase.
    if (/^io\.(buildpacks|kiln)\./.test(l.key)) {
      i.warn?.(
        `Ignoring label ${JSON.stringify(l.key)} from launch.toml: io.buildpacks.* and io.kiln.* labels are set by kiln`,
      );
      continue;
    }
    labels[l.key] = l.value;
  }
  if (i.execEnv) labels['io.buildpacks.exec-env'] = i.execEnv;
  labels[BUILD_USER_LABEL] = `${i.uid}:${i.gid}`;
  return labels;
}
