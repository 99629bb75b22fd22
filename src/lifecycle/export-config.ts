import path from 'node:path';
import type { BuildMetadata } from '../cnb/metadata.ts';
import { KilnError } from '../internal/errors.ts';
import type { Image, Layer } from '../oci/image.ts';
import { appendLayers, setConfig } from '../oci/mutate.ts';
import type { History } from '../oci/schema.ts';

// The app image's config as the reference exporter writes it: where the build's directories sit
// in the image, the entrypoint, the environment the launcher expects, one history entry per layer.

/**
 * Where the build's directories sit inside the image (and the build sandbox). APP_DIR is the
 * default of the app's place (`--workspace`); the build passes its own as `appPath`.
 */
export const LAYERS_DIR = '/layers';
export const APP_DIR = '/workspace';
export const LAUNCHER_PATH = '/cnb/lifecycle/launcher';
export const PROCESS_DIR = '/cnb/process';

/** entrypointFor picks ENTRYPOINT the way the reference exporter does. */
export function entrypointFor(md: BuildMetadata, userDefault: string | undefined): string {
  if (userDefault) {
    if (!md.processes.some((p) => p.type === userDefault))
      throw new KilnError(
        `default process "${userDefault}" is not defined: buildpacks defined ${md.processes.map((p) => `"${p.type}"`).join(', ') || 'no processes'}`,
      );
    return `${PROCESS_DIR}/${userDefault}`;
  }
  const bpDefault = md['buildpack-default-process-type'];
  return bpDefault ? `${PROCESS_DIR}/${bpDefault}` : LAUNCHER_PATH;
}

function setEnv(env: readonly string[], name: string, value: string): string[] {
  const out = [...env];
  const i = out.findIndex((e) => e.startsWith(`${name}=`));
  if (i >= 0) out[i] = `${name}=${value}`;
  else out.push(`${name}=${value}`);
  return out;
}

function envValue(env: readonly string[], name: string): string | undefined {
  const e = env.find((x) => x.startsWith(`${name}=`));
  return e === undefined ? undefined : e.slice(name.length + 1);
}

/**
 * imageEnv is the run image's env with the CNB directories (the app at `appPath`, where the
 * launcher changes to), Platform API and the launcher on PATH.
 */
export function imageEnv(runEnv: readonly string[], platformApi: string, appPath = APP_DIR): string[] {
  let env = setEnv(runEnv, 'CNB_LAYERS_DIR', LAYERS_DIR);
  env = setEnv(env, 'CNB_APP_DIR', appPath);
  env = setEnv(env, 'CNB_PLATFORM_API', platformApi);
  env = setEnv(env, 'CNB_DEPRECATION_MODE', 'quiet');
  const runPath = envValue(runEnv, 'PATH');
  return setEnv(
    env,
    'PATH',
    [PROCESS_DIR, path.posix.dirname(LAUNCHER_PATH), ...(runPath ? [runPath] : [])].join(':'),
  );
}

/** What goes into the app image's config besides the layers. */
export interface AppImageConfig {
  readonly env: readonly string[];
  readonly entrypoint: string;
  readonly labels: Readonly<Record<string, string>>;
  /** SOURCE_DATE_EPOCH as an ISO date. */
  readonly created: string;
  /** The app's place in the image (the working dir); default APP_DIR. */
  readonly appPath?: string;
}

/** appImage stacks `appended` on the run image and sets the app image's config. */
export function appImage(
  runImage: Image,
  appended: readonly { layer: Layer; history: History }[],
  cfg: AppImageConfig,
): Image {
  // Keep history entries one per layer: a base without history gets neutral entries first.
  const base = setConfig(runImage, (c) => {
    const h = c.history ?? [];
    const nonEmpty = h.filter((x) => !x.empty_layer).length;
    const pad: History[] = Array.from({ length: Math.max(0, c.rootfs.diff_ids.length - nonEmpty) }, () => ({
      created: cfg.created,
    }));
    return { ...c, history: [...h, ...pad] };
  });
  return setConfig(appendLayers(base, ...appended), {
    env: [...cfg.env],
    entrypoint: [cfg.entrypoint],
    cmd: null,
    workingDir: cfg.appPath ?? APP_DIR,
    labels: { ...cfg.labels },
    created: cfg.created,
  });
}
