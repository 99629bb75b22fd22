import { buffer } from 'node:stream/consumers';
import { KilnError } from '../internal/errors.ts';
import type { Digest } from '../oci/digest.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import { MissingPlatformError } from '../oci/platform.ts';
import type { Descriptor, Platform } from '../oci/schema.ts';
import type { RegistryClient } from '../registry/client.ts';
import { RegistryError } from '../registry/errors.ts';
import type { ProgressSink } from '../registry/progress.ts';
import { type Reference, referenceString, repositoryString } from '../registry/reference.ts';
import { remoteImage, remoteManifest } from '../registry/remote.ts';
import { writeImage, writeIndex } from '../registry/write.ts';
import {
  type Description,
  describeValue,
  foundOnPlatform,
  type ImageTarget,
  isIndex,
  onPlatform,
  type ReadOptions,
  type Referrer,
  type Referrers,
  referrerOf,
  type Written,
} from './image-target.ts';

// A registry repository as an ImageTarget (`[docker://]REGISTRY/REPO[:TAG][@DIGEST]`). Reads try
// the registry's pull mirror first (kiln config registry-mirrors); writes never use mirrors.
// Blobs the repository has are not uploaded again, and blobs elsewhere in the registry are mounted.

/** Referrer blobs (SBOM documents, signatures) are read whole; larger ones are refused. */
const REFERRER_BLOB_LIMIT = 64 << 20;

/** What registry targets share within one command. */
export interface RegistryAccess {
  readonly client: RegistryClient;
  readonly platform?: Platform;
  readonly progress?: ProgressSink;
  /** The pull mirror of a registry; reads fall back to the registry itself. */
  readonly mirrorFor?: (registry: string) => string | undefined;
  readonly debug?: (msg: string) => void;
}

/** RegistryTarget is one reference in a registry. */
export class RegistryTarget implements ImageTarget {
  readonly name: string;
  readonly imageName: string;
  readonly registry: string;
  readonly ref: Reference;
  readonly referrers: Referrers;
  readonly #io: RegistryAccess;
  readonly #explain: ((e: unknown) => unknown) | undefined;

  /**
   * `explain`, when given, rewrites a read failure (a bare name the local store did not hold and
   * whose registry cannot be reached says both places were looked in).
   */
  constructor(ref: Reference, io: RegistryAccess, explain?: (e: unknown) => unknown) {
    this.ref = ref;
    this.name = referenceString(ref);
    this.imageName = this.name;
    this.registry = ref.registry;
    this.#io = io;
    this.#explain = explain;
    this.referrers = registryReferrers(this);
  }

  get client(): RegistryClient {
    return this.#io.client;
  }

  /**
   * viaMirror reads with `f` where reads go: the registry's pull mirror first (kiln config
   * registry-mirrors), the registry itself when there is none or the mirror fails. A failure at
   * the registry is explained (a bare name also searched the local store) unless `explain` is off.
   */
  async viaMirror<T>(f: (ref: Reference) => Promise<T>, explain = true): Promise<T> {
    const mirror = this.#io.mirrorFor?.(this.ref.registry);
    if (mirror && mirror !== this.ref.registry) {
      try {
        return await f({ ...this.ref, registry: mirror });
      } catch (e) {
        this.#io.debug?.(
          `mirror ${mirror} of ${this.ref.registry}: ${(e as Error).message}; using the registry itself`,
        );
      }
    }
    return f(this.ref).catch((e: unknown) => {
      throw explain && this.#explain ? this.#explain(e) : e;
    });
  }

  async read(opts: ReadOptions = {}): Promise<Image> {
    const platform = opts.platform ?? this.#io.platform;
    const o = { ...(platform ? { platform } : {}), ...this.#progress() };
    return this.viaMirror(async (ref) =>
      onPlatform(await remoteImage(this.#io.client, ref, o), platform, this.name),
    );
  }

  async readAny(): Promise<Image | ImageIndex> {
    return this.viaMirror((ref) => remoteManifest(this.#io.client, ref, this.#progress()));
  }

  async find(): Promise<Image | undefined> {
    try {
      const platform = this.#io.platform;
      const found = await remoteImage(this.#io.client, this.ref, platform ? { platform } : {});
      return await foundOnPlatform(found, platform);
    } catch (e) {
      // An index without this platform holds nothing to reuse for it.
      if (e instanceof MissingPlatformError) return undefined;
      // Absent, or not ours to see: a first build.
      if (e instanceof RegistryError && (e.status === 404 || e.status === 401 || e.status === 403))
        return undefined;
      throw e;
    }
  }

  write(value: Image | ImageIndex): Promise<Written> {
    return this.writeTagged(value, []);
  }

  /** writeTagged pushes `value` once and points the reference's tag and `tags` at it. */
  async writeTagged(value: Image | ImageIndex, tags: readonly string[]): Promise<Written> {
    const opts = { ...this.#progress(), ...(tags.length ? { tags } : {}) };
    const r = isIndex(value)
      ? await writeIndex(this.#io.client, this.ref, value, opts)
      : await writeImage(this.#io.client, this.ref, value, opts);
    return { digest: r.digest, names: [this.imageName] };
  }

  async describe(): Promise<Description> {
    return describeValue(await this.readAny());
  }

  digestReference(digest: string): string {
    return `${repositoryString(this.ref)}@${digest}`;
  }

  async stagingBlobs(): Promise<undefined> {
    return undefined;
  }

  /** The same target writing its uploads' progress to `progress`. */
  #progress(): { progress?: ProgressSink } {
    return this.#io.progress ? { progress: this.#io.progress } : {};
  }

  /** progressOpts: write options of pushes made for this target (referrers). */
  get pushOptions(): { progress?: ProgressSink } {
    return this.#progress();
  }
}

// The referrers API (or the tag-schema fallback) of the target's repository.
function registryReferrers(t: RegistryTarget): Referrers {
  async function listAt(ref: Reference, subject: Digest, artifactType?: string): Promise<Referrer[]> {
    const repo = t.client.repository(ref);

    // The manifests are fetched at once (a signed image has half a dozen referrers or more).
    const listed = (await repo.referrers(subject, artifactType)).manifests;
    const fetched = await Promise.all(listed.map((d) => repo.getManifest(d.digest)));
    const out: Referrer[] = [];
    for (const [i, d] of listed.entries()) {
      const m = fetched[i]!;
      const blob = async (b: { digest: string; size: number }) => {
        if (b.size > REFERRER_BLOB_LIMIT)
          throw new KilnError(
            `referrer blob ${b.digest} of ${t.name} is ${b.size} bytes; refusing more than ${REFERRER_BLOB_LIMIT}`,
          );
        return new Uint8Array(await buffer(await repo.openBlob(b.digest as Digest, b.size)));
      };
      const r = referrerOf({ ...d, mediaType: m.mediaType }, m.bytes, subject, artifactType, blob);
      if (r) out.push(r);
    }
    return out;
  }
  return {
    async list(subject: Digest, artifactType?: string): Promise<Referrer[]> {
      // Read where the image is read: the mirror first, the registry when the mirror fails.
      return t.viaMirror((ref) => listAt(ref, subject, artifactType), false);
    },
    async attachAll(
      subject: Digest,
      artifacts: readonly Image[],
      replaces?: (old: Descriptor, added: Descriptor) => boolean,
    ): Promise<void> {
      // Blobs and manifests by digest, at once; then the referrers index updated once. Artifacts
      // share blobs (the empty config): the first with each config goes first, so no two uploads
      // of one blob race (the registry refuses a manifest whose blob is still being committed).
      const seen = new Set<string>();
      const leaders: Image[] = [];
      const rest: Image[] = [];
      for (const a of artifacts) {
        const c = (await a.manifest()).config.digest;
        (seen.has(c) ? rest : leaders).push(a);
        seen.add(c);
      }
      const push = (list: readonly Image[]) =>
        Promise.all(
          list.map(async (a) => {
            const [m, digest, raw, mediaType] = await Promise.all([
              a.manifest(),
              a.digest(),
              a.rawManifest(),
              a.mediaType(),
            ]);
            if (m.subject?.digest !== subject)
              throw new KilnError(`${t.name}: artifact ${digest} is not a referrer of ${subject}`);
            await writeImage(t.client, { ...t.ref, tag: undefined, digest }, a, t.pushOptions);
            return {
              mediaType,
              digest,
              size: raw.length,
              ...(m.artifactType ? { artifactType: m.artifactType } : {}),
              // The referrers API lists a manifest's annotations with it; the fallback index too.
              ...(m.annotations ? { annotations: m.annotations } : {}),
            };
          }),
        );
      const entries = [...(await push(leaders)), ...(await push(rest))];
      await t.client.repository(t.ref, { push: true }).indexReferrers(subject, entries, replaces);
    },
    async attach(artifact: Image): Promise<Digest> {
      const manifest = await artifact.manifest();
      if (!manifest.subject) throw new KilnError(`${t.name}: an artifact without a subject is no referrer`);
      const digest = await artifact.digest();
      // Blobs and manifest by digest, then registered as a referrer of the subject.
      await writeImage(t.client, { ...t.ref, tag: undefined, digest }, artifact, t.pushOptions);
      return t.client
        .repository(t.ref, { push: true })
        .putReferrer(
          await artifact.rawManifest(),
          await artifact.mediaType(),
          manifest.artifactType ? { artifactType: manifest.artifactType } : {},
          manifest.subject.digest as Digest,
        );
    },
  };
}
