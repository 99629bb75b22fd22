import { existsSync } from 'node:fs';
import path from 'node:path';
import { type KilnConfig, loadConfigSync, mirrorFor } from '../config/config-file.ts';
import { KilnError, UsageError } from '../internal/errors.ts';
import { Layout, REF_NAME } from '../layout/layout.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import type { Platform } from '../oci/schema.ts';
import { RegistryClient } from '../registry/client.ts';
import { dockerConfigKeychain } from '../registry/credentials.ts';
import type { ProgressSink } from '../registry/progress.ts';
import { parseReference, type Reference, referenceString, repositoryString } from '../registry/reference.ts';
import { remoteImage, remoteManifest } from '../registry/remote.ts';
import { writeImage as pushImage, writeIndex as pushIndex } from '../registry/write.ts';
import { ImageStore, storeNameOf } from '../store/store.ts';
import { httpClient } from './http-client.ts';
import type { Logger } from './logger.ts';
import type { Settings } from './settings.ts';

// The one place where an image argument becomes a source or a sink:
//   oci:DIR[:TAG]                 an OCI image layout directory (skopeo's syntax; first ':' splits)
//   docker-archive:FILE[:NAME:TAG] a `docker save` tarball (the name it is loaded under)
//   local:NAME                    kiln's local image store (an OCI layout under the data dir)
//   [docker://]REGISTRY/REPO[:TAG][@DIGEST]   a registry
// Add new transports here (parse, read, write), not in commands.

/** Where an image lives. */
export type ImageLocation =
  | { readonly kind: 'oci'; readonly dir: string; readonly tag: string | undefined }
  | { readonly kind: 'docker-archive'; readonly file: string; readonly tag: string | undefined }
  | { readonly kind: 'local'; readonly name: string }
  | { readonly kind: 'registry'; readonly ref: Reference };

/**
 * parseImageLocation maps a command-line image argument to its location. Registry references
 * may carry a `docker://` prefix; other transports need theirs.
 */
export function parseImageLocation(arg: string): ImageLocation {
  const bad = (why: string): never => {
    throw new UsageError(`invalid image "${arg}": ${why}`);
  };
  const split = (rest: string): [string, string | undefined] => {
    const i = rest.indexOf(':');
    return i < 0 ? [rest, undefined] : [rest.slice(0, i), rest.slice(i + 1) || undefined];
  };
  if (arg.startsWith('oci:')) {
    const [dir, tag] = split(arg.slice(4));
    if (!dir) bad('oci: needs a directory (oci:DIR[:TAG])');
    return { kind: 'oci', dir: path.resolve(dir), tag };
  }
  if (arg.startsWith('docker-archive:')) {
    const [file, tag] = split(arg.slice('docker-archive:'.length));
    if (!file) bad('docker-archive: needs a file (docker-archive:FILE[:TAG])');
    return { kind: 'docker-archive', file: path.resolve(file), tag };
  }
  if (arg.startsWith('local:')) {
    const name = arg.slice('local:'.length);
    if (!name) bad('local: needs an image name');
    try {
      storeNameOf(name);
    } catch (e) {
      bad((e as Error).message);
    }
    return { kind: 'local', name };
  }
  const m = /^([a-z][a-z0-9+.-]*):\/\//.exec(arg);
  if (m && m[1] !== 'docker')
    bad(`unknown transport "${m[1]}://" (use oci:, docker-archive:, local: or docker://)`);
  try {
    return { kind: 'registry', ref: parseReference(arg) };
  } catch (e) {
    return bad((e as Error).message.replace(/^invalid image reference "[^"]*": /, ''));
  }
}

/**
 * locateImage resolves an image argument the way commands that read images name them: an
 * explicit transport (`oci:`, `docker-archive:`, `local:`, `docker://`) is used as given; a bare
 * name that kiln's local store holds (what `kiln build NAME` or `kiln stack create` wrote) is the
 * local image; anything else is a registry reference. Never creates the store.
 */
export async function locateImage(arg: string, storeDir: string): Promise<ImageLocation> {
  const loc = parseImageLocation(arg);
  if (loc.kind !== 'registry' || arg.startsWith('docker://')) return loc;
  if (!existsSync(path.join(storeDir, 'index.json'))) return loc;
  const store = await ImageStore.open(storeDir);
  return (await store.digestOf(arg)) ? { kind: 'local', name: arg } : loc;
}

/**
 * destinationOf is where a command writes the image it makes (`kiln build IMAGE`, `kiln buildpack
 * package NAME`): an explicit transport is used as given; a plain name goes to the local store,
 * or with `--publish` (`publish`) to its registry.
 */
export function destinationOf(arg: string, publish: boolean): ImageLocation {
  const loc = parseImageLocation(arg);
  if (loc.kind === 'registry' && !publish && !arg.startsWith('docker://'))
    return { kind: 'local', name: arg };
  return loc;
}

/**
 * openImage locates `arg` (locateImage) and opens it as a single-platform image (readImage); a
 * bare name found neither in the local store nor in an unreachable registry says both.
 */
export async function openImage(arg: string, io: ImageIO): Promise<{ loc: ImageLocation; image: Image }> {
  const loc = await locateImage(arg, io.storeDir);
  try {
    return { loc, image: await readImage(loc, io) };
  } catch (e) {
    throw explainUnreachable(arg, loc, io.storeDir, e);
  }
}

/**
 * explainUnreachable turns the failure to read a bare name (no registry host: `my-app`,
 * `team/app:v1`) that locateImage sent to its registry because the local store does not hold
 * it into one line naming both places looked in; the registry's error alone hides that the
 * local store was searched. Any other error is returned as it is.
 */
export function explainUnreachable(arg: string, loc: ImageLocation, storeDir: string, e: unknown): unknown {
  if (loc.kind !== 'registry' || !isBareName(arg)) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const m = /^cannot reach registry \S+ (?:at )?(.*)$/s.exec(msg);
  if (!m) return e;
  return new KilnError(
    `image ${arg} not found in the local store (${storeDir}) and registry ${loc.ref.registry} unreachable: ${m[1]}`,
    { cause: e },
  );
}

/**
 * isBareName says whether an image argument names no registry host: no transport and a first
 * path part without '.', ':' or "localhost" (the distribution reference rule), so Docker Hub is
 * only the default.
 */
export function isBareName(arg: string): boolean {
  if (arg.startsWith('docker://')) return false;
  if (!arg.includes('/')) return true;
  const first = arg.split('/')[0]!;
  return !(first.includes('.') || first.includes(':') || first === 'localhost');
}

/**
 * digestReference is the digest reference kiln records for an image it read from `loc`
 * (lifecycle label `runImage.reference`, analyzed.toml): the repository without its tag at the
 * manifest digest, `docker.io/library/run@sha256:…`, as the reference lifecycle and pack write
 * it, for a local store image too (its name is a registry name); layouts and archives as
 * `oci:DIR@sha256:…` and `docker-archive:FILE@sha256:…`. Build and rebase both record this.
 */
export function digestReference(loc: ImageLocation, digest: string): string {
  switch (loc.kind) {
    case 'registry':
      return `${repositoryString(loc.ref)}@${digest}`;
    case 'local':
      return `${repositoryString(parseReference(loc.name))}@${digest}`;
    case 'oci':
      return `oci:${loc.dir}@${digest}`;
    case 'docker-archive':
      return `docker-archive:${loc.file}@${digest}`;
  }
}

/** describeLocation renders a location for messages. */
export function describeLocation(loc: ImageLocation): string {
  switch (loc.kind) {
    case 'oci':
      return `oci:${loc.dir}${loc.tag ? `:${loc.tag}` : ''}`;
    case 'docker-archive':
      return `docker-archive:${loc.file}${loc.tag ? `:${loc.tag}` : ''}`;
    case 'local':
      return `local:${storeNameOf(loc.name)}`;
    case 'registry':
      return referenceString(loc.ref);
  }
}

/** Collaborators of reading and writing images, built once per command from the settings. */
export interface ImageIO {
  readonly client: RegistryClient;
  /** Directory of kiln's local image store. */
  readonly storeDir: string;
  readonly platform?: Platform;
  readonly progress?: ProgressSink;
  /**
   * The pull mirror of a registry (kiln config registry-mirrors): reads try it first and fall
   * back to the registry itself. Writes never use mirrors.
   */
  readonly mirrorFor?: (registry: string) => string | undefined;
  /** Debug lines (e.g. a mirror that failed). */
  readonly debug?: (msg: string) => void;
}

/**
 * registryClient builds the registry client the CLI uses: docker config credentials, insecure
 * hosts from --insecure-registry and the kiln config file (`config`, read from the settings'
 * file when not given).
 */
export function registryClient(
  settings: Settings,
  log: Logger,
  config: KilnConfig = loadConfigSync(settings.configFile),
): RegistryClient {
  return new RegistryClient({
    keychain: dockerConfigKeychain({ dir: settings.dockerConfigDir, env: settings.env }),
    insecure: [...settings.insecureRegistries, ...config.insecureRegistries],
    http: httpClient(settings, config, log.redactor),
    debug: (m) => log.debug(m),
    redactor: log.redactor,
  });
}

/** imageIO builds the collaborators for image commands from the CLI settings. */
export function imageIO(
  settings: Settings,
  log: Logger,
  extra: { platform?: Platform; progress?: ProgressSink } = {},
): ImageIO {
  const config = loadConfigSync(settings.configFile);
  return {
    client: registryClient(settings, log, config),
    storeDir: ImageStore.defaultDir(settings.dataDir),
    ...(config.registryMirrors.length ? { mirrorFor: (r: string) => mirrorFor(config, r) } : {}),
    debug: (m) => log.debug(m),
    ...extra,
  };
}

/**
 * readImage opens the single-platform image at `loc` (an index is resolved to `io.platform`,
 * default linux/amd64). Nothing is downloaded until its layers are read.
 */
export async function readImage(loc: ImageLocation, io: ImageIO): Promise<Image> {
  const select = io.platform ? { platform: io.platform } : {};
  switch (loc.kind) {
    case 'oci': {
      const layout = await openLayout(loc.dir);
      return layout.image(await layoutRef(layout, loc.tag), select);
    }
    case 'local': {
      const store = await ImageStore.open(io.storeDir);
      const img = await store.find(loc.name);
      if (!img)
        throw new KilnError(`image ${storeNameOf(loc.name)} not found in the local store (${io.storeDir})`);
      return img;
    }
    case 'registry': {
      const opts = { ...select, ...(io.progress ? { progress: io.progress } : {}) };
      const mirror = io.mirrorFor?.(loc.ref.registry);
      if (mirror && mirror !== loc.ref.registry) {
        try {
          return await remoteImage(io.client, { ...loc.ref, registry: mirror }, opts);
        } catch (e) {
          io.debug?.(
            `mirror ${mirror} of ${loc.ref.registry}: ${(e as Error).message}; using the registry itself`,
          );
        }
      }
      return remoteImage(io.client, loc.ref, opts);
    }
    case 'docker-archive':
      // Loaded on demand: the archive code (a tar reader and writer) is not needed by registry work.
      return (await import('../archive/docker-archive.ts'))
        .readDockerArchive(loc.file, loc.tag ? { tag: loc.tag } : {})
        .catch((e: unknown) => {
          throw e instanceof KilnError ? e : new KilnError((e as Error).message, { cause: e });
        });
  }
}

/**
 * readAny opens what `loc` names, keeping a registry index as an index (for `copy --all` and
 * `inspect`); other transports give a single image.
 */
export async function readAny(loc: ImageLocation, io: ImageIO): Promise<Image | ImageIndex> {
  if (loc.kind === 'registry') {
    const found = await remoteManifest(io.client, loc.ref, io.progress ? { progress: io.progress } : {});
    return found;
  }
  return readImage(loc, io);
}

/** isIndex tells an ImageIndex from an Image. */
export function isIndex(x: Image | ImageIndex): x is ImageIndex {
  return 'indexManifest' in x;
}

/** writeImageTo writes `image` to `loc` and returns the manifest digest written. */
export async function writeImageTo(
  loc: ImageLocation,
  image: Image | ImageIndex,
  io: ImageIO,
): Promise<Digest> {
  if (isIndex(image)) {
    if (loc.kind !== 'registry')
      throw new KilnError(`${describeLocation(loc)}: only registries take whole image indexes (drop --all)`);
    return (await pushIndex(io.client, loc.ref, image, io.progress ? { progress: io.progress } : {})).digest;
  }
  switch (loc.kind) {
    case 'oci': {
      const layout = await Layout.init(loc.dir);
      return (await layout.writeImage(image, loc.tag ?? 'latest')).digest as Digest;
    }
    case 'local': {
      const store = await ImageStore.open(io.storeDir);
      return (await store.write(image, [loc.name])).digest as Digest;
    }
    case 'registry':
      return (await pushImage(io.client, loc.ref, image, io.progress ? { progress: io.progress } : {}))
        .digest;
    case 'docker-archive':
      await (await import('../archive/docker-archive.ts')).writeDockerArchive(loc.file, {
        image,
        tags: loc.tag ? [loc.tag] : [],
      });
      return image.digest();
  }
}

async function openLayout(dir: string): Promise<Layout> {
  try {
    return await Layout.open(dir);
  } catch (e) {
    throw new KilnError((e as Error).message);
  }
}

// Without a tag, a layout holding exactly one image means that image (skopeo's rule); else "latest".
async function layoutRef(layout: Layout, tag: string | undefined): Promise<string> {
  if (tag) return tag;
  const manifests = (await layout.index()).manifests;
  if (manifests.length === 1) return manifests[0]!.annotations?.[REF_NAME] ?? manifests[0]!.digest;
  return 'latest';
}
