import { KilnError } from '../internal/errors.ts';
import type { Image, ImageIndex } from '../oci/image.ts';
import type { Platform } from '../oci/schema.ts';
import {
  type Description,
  describeValue,
  type ImageTarget,
  isIndex,
  noIndexes,
  onPlatform,
  type ReadOptions,
  type Referrer,
  type Referrers,
  type Written,
} from './image-target.ts';

// A `docker save` tarball as an ImageTarget (`docker-archive:FILE[:NAME:TAG]`). The archive code
// (a tar reader and writer) is loaded on demand: registry work does not need it.

const archive = () => import('../archive/docker-archive.ts');

/** DockerArchiveTarget is one image of a docker-archive tarball (by the name it is loaded under). */
export class DockerArchiveTarget implements ImageTarget {
  readonly name: string;
  readonly imageName: string;
  readonly file: string;
  readonly tag: string | undefined;
  readonly referrers: Referrers;
  /** The platform the archive's image must be for, when one is asked for. */
  readonly platform: Platform | undefined;

  constructor(file: string, tag: string | undefined, platform?: Platform) {
    this.file = file;
    this.platform = platform;
    this.tag = tag;
    this.name = `docker-archive:${file}${tag ? `:${tag}` : ''}`;
    this.imageName = this.name;
    const name = this.name;
    this.referrers = {
      // The format has no place for referrers: there are none to list, and none can be kept.
      list: async (): Promise<Referrer[]> => [],
      attach: async () => {
        throw new KilnError(`${name}: a docker-archive cannot hold referrers (SBOMs, signatures)`);
      },
    };
  }

  async read(opts: ReadOptions = {}): Promise<Image> {
    const image = await (await archive())
      .readDockerArchive(this.file, this.tag ? { tag: this.tag } : {})
      .catch((e: unknown) => {
        throw e instanceof KilnError ? e : new KilnError((e as Error).message, { cause: e });
      });
    return onPlatform(image, opts.platform ?? this.platform, this.name);
  }

  readAny(): Promise<Image | ImageIndex> {
    return this.read();
  }

  async find(): Promise<undefined> {
    // An archive is rewritten whole; its previous content is not read for reuse.
    return undefined;
  }

  async write(value: Image | ImageIndex): Promise<Written> {
    if (isIndex(value)) throw noIndexes(this.name);
    // Temp name + rename: a failed write leaves the old archive (or nothing).
    await (await archive()).writeDockerArchive(this.file, { image: value, tags: this.tag ? [this.tag] : [] });
    return { digest: await value.digest(), names: [this.imageName] };
  }

  async describe(): Promise<Description> {
    return describeValue(await this.read());
  }

  digestReference(digest: string): string {
    return `docker-archive:${this.file}@${digest}`;
  }

  async stagingBlobs(): Promise<undefined> {
    return undefined;
  }
}
