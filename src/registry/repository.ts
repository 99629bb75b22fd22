import type { Readable } from 'node:stream';
import { KilnError } from '../internal/errors.ts';
import type { HttpResponse } from '../internal/http/client.ts';
import { isTransient, withRetry } from '../internal/http/retry.ts';
import { youngGcPacer } from '../internal/young-gc.ts';
import { type Digest, hexOf, isDigest, sha256 } from '../oci/digest.ts';
import { MANIFEST_ACCEPT, MediaType } from '../oci/media-types.ts';
import { type Descriptor, type Index, IndexSchema, parseJson } from '../oci/schema.ts';
import type { RegistryClient, SendInit } from './client.ts';
import { RegistryError, readErrorBody, readLimited } from './errors.ts';
import { noProgress, type ProgressSink } from './progress.ts';
import { apiHost, type Repository, repositoryString } from './reference.ts';
import { describeNetError, expectStatus, retryReason } from './response.ts';
import { VerifyingStream, verifyBytes } from './verify.ts';

/**
 * Blob transfers free their dead chunks every 4 MiB moved, downloads and uploads together (see
 * young-gc.ts; a file read stream also allocates a buffer per read).
 */
const collectYoung = youngGcPacer(4 << 20);

/** Result of uploadBlob. */
export type UploadResult = 'exists' | 'mounted' | 'uploaded';

/** A manifest as fetched: exact bytes, media type and digest. */
export interface FetchedManifest {
  readonly bytes: Uint8Array;
  readonly mediaType: string;
  readonly digest: Digest;
}

const MANIFEST_LIMIT = 4 * 1024 * 1024; // distribution's own limit for manifests

/**
 * RepositoryClient is the API of one repository: manifests, blobs, tags and referrers. All its
 * requests carry the scopes it was created with.
 */
export class RepositoryClient {
  readonly client: RegistryClient;
  readonly repo: Repository;
  readonly scopes: readonly string[];
  readonly #name: string;

  constructor(client: RegistryClient, repo: Repository, scopes: readonly string[]) {
    this.client = client;
    this.repo = repo;
    this.scopes = scopes;
    this.#name = repositoryString(repo);
  }

  #url(path: string): string {
    return `${this.client.scheme(this.repo.registry)}://${apiHost(this.repo.registry)}/v2/${this.repo.repository}/${path}`;
  }

  #req(action: string, url: string | URL, init: SendInit, ok: readonly number[]): Promise<HttpResponse> {
    return this.client.request(this.repo.registry, this.scopes, action, url, init, ok);
  }

  // ---- manifests

  /**
   * getManifest fetches a manifest or index by tag or digest, with the Accept header listing every
   * type we understand. When asked by digest, the bytes are verified against it.
   */
  async getManifest(ref: string, accept: string = MANIFEST_ACCEPT): Promise<FetchedManifest> {
    const what = `manifest ${this.#name}${isDigest(ref) ? '@' : ':'}${ref}`;
    return withRetry(async () => {
      const res = await this.#req(
        `get ${what}`,
        this.#url(`manifests/${ref}`),
        { headers: { accept } },
        [200, 404],
      );
      if (res.status === 404) {
        const { errors } = await readErrorBody(res);
        throw new RegistryError(
          `get ${what}`,
          404,
          errors.length ? errors : [{ code: 'MANIFEST_UNKNOWN', message: '' }],
        );
      }
      const len = Number(res.headers.get('content-length') ?? '0');
      if (len > MANIFEST_LIMIT) {
        await res.discard();
        throw new KilnError(
          `get ${what}: ${len} bytes is larger than the ${MANIFEST_LIMIT}-byte manifest limit`,
        );
      }
      const bytes = await readAll(res, MANIFEST_LIMIT, `get ${what}`);
      const digest = isDigest(ref) ? ref : sha256(bytes);
      if (isDigest(ref)) verifyBytes(bytes, ref, what);
      const header = res.headers.get('docker-content-digest');
      if (!isDigest(ref) && header && isDigest(header) && header !== digest && header.startsWith('sha256:'))
        throw new KilnError(`get ${what}: registry says ${header} but the content hashes to ${digest}`);
      return { bytes, mediaType: manifestMediaType(res.headers.get('content-type'), bytes), digest };
    }, this.client.retry);
  }

  /** headManifest returns the descriptor of a tag or digest, or undefined when it does not exist. */
  async headManifest(ref: string, accept: string = MANIFEST_ACCEPT): Promise<Descriptor | undefined> {
    const res = await this.#req(
      `check manifest ${this.#name}:${ref}`,
      this.#url(`manifests/${ref}`),
      { method: 'HEAD', headers: { accept } },
      [200, 404],
    );
    // A HEAD answer has no body, but the connection goes back to the pool only once it is read:
    // left alone, it keeps the process alive until the registry drops it (a minute).
    await res.discard();
    if (res.status === 404) return undefined;
    const d = res.headers.get('docker-content-digest');
    const size = Number(res.headers.get('content-length') ?? '-1');
    const mediaType = res.headers.get('content-type') ?? '';
    if (!d || !isDigest(d) || size < 0) {
      // Some registries omit the digest on HEAD: fall back to GET.
      const m = await this.getManifest(ref, accept);
      return { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
    }
    return { mediaType: mediaType.split(';')[0]!.trim(), digest: d, size };
  }

  /** putManifest uploads a manifest or index under a tag or its digest and returns its digest. */
  async putManifest(ref: string, bytes: Uint8Array, mediaType: string): Promise<Digest> {
    const digest = sha256(bytes);
    const res = await this.#req(
      `put manifest ${this.#name}:${ref}`,
      this.#url(`manifests/${ref}`),
      { method: 'PUT', headers: { 'content-type': mediaType }, body: bytes },
      [200, 201, 202],
    );
    await res.discard();
    const got = res.headers.get('docker-content-digest');
    if (got?.startsWith('sha256:') && got !== digest)
      throw new KilnError(`put manifest ${this.#name}:${ref}: registry stored ${got}, expected ${digest}`);
    return digest;
  }

  /** deleteManifest removes a manifest by digest (registries must allow deletes). */
  async deleteManifest(digest: Digest): Promise<void> {
    const res = await this.#req(
      `delete manifest ${this.#name}@${digest}`,
      this.#url(`manifests/${digest}`),
      { method: 'DELETE' },
      [200, 202, 404],
    );
    await res.discard();
  }

  // ---- blobs

  /** headBlob returns the size of a blob the repository has, or undefined. */
  async headBlob(digest: Digest): Promise<number | undefined> {
    const res = await this.#req(
      `check blob ${this.#name}@${digest}`,
      this.#url(`blobs/${digest}`),
      { method: 'HEAD' },
      [200, 404],
    );
    await res.discard();
    if (res.status === 404) return undefined;
    return Number(res.headers.get('content-length') ?? '-1');
  }

  /**
   * openBlob streams a blob, verified against its digest (and size, when given) as it is read:
   * the stream errors at the end on a mismatch. A connection that breaks mid-body is resumed
   * with a Range request (bounded attempts), so a flaky link costs no restart from zero.
   */
  async openBlob(
    digest: Digest,
    size?: number,
    opts: { progress?: ProgressSink; label?: string } = {},
  ): Promise<Readable> {
    const what = `blob ${this.#name}@${digest}`;
    const url = this.#url(`blobs/${digest}`);
    const first = await this.#req(`get ${what}`, url, {}, [200]);
    const client = this.client;
    const progress = opts.progress ?? noProgress;
    const total = size ?? Number(first.headers.get('content-length') ?? '-1');
    const label = opts.label;
    const emit = (done: number, state: 'running' | 'done') =>
      progress({ id: digest, action: 'download', state, done, total, ...(label ? { label } : {}) });
    const req = (init: SendInit, ok: number[]) => this.#req(`get ${what}`, url, init, ok);
    const verifier = new VerifyingStream(digest, size, what);
    // Bytes flow from each response straight into the verifier (no generator in between: this is
    // the hot path of every pull). A response that breaks mid-body is replaced by a Range request
    // for the rest, so the verifier sees one continuous stream.
    let offset = 0;
    let failures = 0;
    let current: Readable | undefined;
    let closed = false;
    const fail = (e: unknown) => {
      if (closed) return;
      closed = true;
      verifier.destroy(
        e instanceof KilnError
          ? e
          : new KilnError(`get ${what}: connection failed after ${offset} bytes: ${describeNetError(e)}`, {
              cause: e,
            }),
      );
    };
    verifier.on('drain', () => current?.resume());
    verifier.on('close', () => {
      closed = true;
      current?.destroy();
    });
    const attach = (res: HttpResponse) => {
      let skip = res.status === 200 ? offset : 0; // server ignored Range: drop what we have
      const body = res.body;
      current = body;
      body.on('data', (chunk: Buffer) => {
        let c = chunk;
        if (skip > 0) {
          if (c.length <= skip) {
            skip -= c.length;
            return;
          }
          c = c.subarray(skip);
          skip = 0;
        }
        offset += c.length;
        collectYoung(c.length);
        emit(offset, 'running');
        if (!verifier.write(c)) body.pause();
      });
      body.on('end', () => {
        if (closed) return;
        emit(offset, 'done');
        verifier.end();
      });
      body.on('error', (e) => {
        if (closed || current !== body) return;
        current = undefined;
        if (!isTransient(e) || ++failures >= client.retry.attempts) return fail(e);
        client.debugLine(`get ${what}: ${retryReason(e)} at byte ${offset}; resuming`);
        setTimeout(
          () => {
            if (closed) return;
            req({ headers: { range: `bytes=${offset}-` } }, [200, 206]).then((r) => {
              if (closed) void r.discard();
              else attach(r);
            }, fail);
          },
          client.retry.baseDelayMs * 2 ** (failures - 1),
        );
      });
    };
    attach(first);
    return verifier;
  }

  /**
   * uploadBlob makes sure the repository has the blob `desc`: HEAD first (exists), then a
   * cross-repository mount from `mountFrom` (same registry), else an upload: one PUT for small
   * blobs, streamed PATCH chunks with Content-Range for big ones. `open` must return a fresh
   * stream each call: a failed upload is restarted from scratch (bounded retries).
   */
  async uploadBlob(
    desc: { digest: Digest; size: number },
    open: () => Promise<Readable>,
    opts: { mountFrom?: readonly Repository[]; progress?: ProgressSink; label?: string } = {},
  ): Promise<UploadResult> {
    const progress = opts.progress ?? noProgress;
    const label = opts.label;
    const ev = (state: 'running' | 'done' | 'exists' | 'mounted', done: number) =>
      progress({
        id: desc.digest,
        action: 'upload',
        state,
        done,
        total: desc.size,
        ...(label ? { label } : {}),
      });
    const have = await this.headBlob(desc.digest);
    if (have !== undefined) {
      ev('exists', desc.size);
      return 'exists';
    }
    const what = `upload blob ${desc.digest} to ${this.#name}`;
    for (const from of opts.mountFrom ?? []) {
      if (from.registry !== this.repo.registry || from.repository === this.repo.repository) continue;
      const u = new URL(this.#url('blobs/uploads/'));
      u.searchParams.set('mount', desc.digest);
      u.searchParams.set('from', from.repository);
      const res = await this.#req(
        `mount blob ${desc.digest} from ${from.repository}`,
        u,
        { method: 'POST' },
        [201, 202],
      );
      await res.discard();
      if (res.status === 201) {
        ev('mounted', desc.size);
        return 'mounted';
      }
      // 202: the registry opened a normal upload instead; cancel it and upload below.
      const loc = res.headers.get('location');
      if (loc)
        await this.client
          .send(this.repo.registry, this.scopes, new URL(loc, u), { method: 'DELETE' })
          .then((r) => r.discard())
          // Cleanup of an abandoned upload: the registry expires it anyway.
          .catch(() => {});
    }
    await withRetry(
      async () => {
        const start = await this.#req(what, this.#url('blobs/uploads/'), { method: 'POST' }, [202]);
        await start.discard();
        let location = uploadLocation(start, this.#url('blobs/uploads/'), what);
        const src = await open();
        try {
          if (desc.size <= this.client.monolithicMax) {
            const bytes = await readStream(src, desc.size, what);
            location.searchParams.set('digest', desc.digest);
            const put = await this.client.send(this.repo.registry, this.scopes, location, {
              method: 'PUT',
              headers: { 'content-type': 'application/octet-stream' },
              body: bytes,
            });
            await expectStatus(put, [201], what, true);
            ev('done', desc.size);
            return;
          }
          const chunks = new ChunkReader(src);
          let offset = 0;
          while (offset < desc.size) {
            const len = Math.min(this.client.chunkSize, desc.size - offset);
            const startAt = offset;
            const body = chunks.take(len, (n) => ev('running', startAt + n));
            const patch = await this.client.send(this.repo.registry, this.scopes, location, {
              method: 'PATCH',
              headers: {
                'content-type': 'application/octet-stream',
                'content-length': String(len),
                'content-range': `${offset}-${offset + len - 1}`,
              },
              body,
            });
            await expectStatus(patch, [202, 204], what, true);
            location = uploadLocation(patch, location.href, what);
            offset += len;
          }
          if (!(await chunks.atEnd()))
            throw new KilnError(`${what}: source has more than ${desc.size} bytes`);
          location.searchParams.set('digest', desc.digest);
          const put = await this.client.send(this.repo.registry, this.scopes, location, {
            method: 'PUT',
            headers: { 'content-length': '0' },
          });
          await expectStatus(put, [201], what, true);
          ev('done', desc.size);
        } finally {
          src.destroy();
        }
      },
      this.client.retry,
      (e, n, d) =>
        this.client.debugLine(`${what}: ${retryReason(e)}; restarting upload (${n}) in ${Math.round(d)} ms`),
    ).catch((e: unknown) => {
      if (e instanceof KilnError) throw e;
      throw new KilnError(`${what}: ${describeNetError(e)}`, { cause: e });
    });
    return 'uploaded';
  }

  // ---- tags and referrers

  /** listTags returns every tag of the repository, following `Link: <…>; rel="next"` pages. */
  async listTags(): Promise<string[]> {
    const tags: string[] = [];
    let url: URL | undefined = new URL(this.#url('tags/list'));
    while (url) {
      const res: HttpResponse = await this.#req(`list tags of ${this.#name}`, url, {}, [200, 404]);
      if (res.status === 404) {
        await res.discard();
        return [];
      }
      let j: { tags?: unknown } | null;
      try {
        j = JSON.parse(await readLimited(res, 16 << 20)) as typeof j;
      } catch {
        throw new KilnError(`list tags of ${this.#name}: the registry answered something other than JSON`);
      }
      const list = j?.tags;
      if (Array.isArray(list)) for (const t of list) if (typeof t === 'string') tags.push(t);
      const link = res.headers.get('link');
      const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
      // The next page stays on this registry: a Link elsewhere would take the credentials along.
      const next: URL | null = m ? URL.parse(m[1]!, url.href) : null;
      if (m && next?.origin !== url.origin)
        throw new KilnError(`list tags of ${this.#name}: the registry's next-page link leaves the registry`);
      url = next ?? undefined;
    }
    return tags;
  }

  /**
   * referrers lists the manifests whose `subject` is `digest`: the referrers API when the
   * registry has it, else the tag-schema fallback (an index tagged `sha256-<hex>`).
   */
  async referrers(digest: Digest, artifactType?: string): Promise<Index> {
    const u = new URL(this.#url(`referrers/${digest}`));
    if (artifactType) u.searchParams.set('artifactType', artifactType);
    const res = await this.#req(
      `list referrers of ${this.#name}@${digest}`,
      u,
      { headers: { accept: MediaType.OciIndex } },
      [200, 404],
    );
    let index: Index;
    if (res.status === 200 && (res.headers.get('content-type') ?? '').startsWith(MediaType.OciIndex)) {
      index = parseJson(
        IndexSchema,
        await readAll(res, MANIFEST_LIMIT, 'referrers'),
        `referrers of ${digest}`,
      );
    } else {
      await res.discard();
      index = await this.#fallbackReferrers(digest);
    }
    if (artifactType)
      return { ...index, manifests: index.manifests.filter((m) => m.artifactType === artifactType) };
    return index;
  }

  /**
   * indexReferrers registers manifests already pushed by digest as referrers of `subject` in one
   * step: nothing when the registry has the referrers API (it indexes subjects itself), else one
   * read and one write of the tag-schema index (`putReferrer` does that once per manifest).
   */
  async indexReferrers(
    subject: Digest,
    entries: readonly Descriptor[],
    replaces: (old: Descriptor, added: Descriptor) => boolean = () => false,
  ): Promise<void> {
    const res = await this.#req(
      `list referrers of ${this.#name}@${subject}`,
      this.#url(`referrers/${subject}`),
      { headers: { accept: MediaType.OciIndex } },
      [200, 404],
    );
    await res.discard();
    if (res.status === 200 && (res.headers.get('content-type') ?? '').startsWith(MediaType.OciIndex)) return;
    const current = await this.#fallbackReferrers(subject);
    const added = new Set(entries.map((e) => e.digest));
    const manifests = current.manifests
      .filter((m) => !added.has(m.digest) && !entries.some((e) => replaces(m, e)))
      .concat(entries);
    const next = JSON.stringify({ ...current, schemaVersion: 2, mediaType: MediaType.OciIndex, manifests });
    await this.putManifest(referrersTag(subject), Buffer.from(next), MediaType.OciIndex);
  }

  async #fallbackReferrers(digest: Digest): Promise<Index> {
    const tag = referrersTag(digest);
    try {
      const m = await this.getManifest(tag, MediaType.OciIndex);
      return parseJson(IndexSchema, m.bytes, `referrers index ${this.#name}:${tag}`);
    } catch (e) {
      if (e instanceof RegistryError && e.status === 404) return emptyIndex();
      throw e;
    }
  }

  /**
   * putReferrer uploads an artifact manifest whose `subject` is `subject.digest`. When the registry
   * does not process subjects itself (no `OCI-Subject` header), the tag-schema index is updated
   * too. The artifact's blobs must already be uploaded.
   */
  async putReferrer(
    bytes: Uint8Array,
    mediaType: string,
    desc: Omit<Descriptor, 'digest' | 'size'>,
    subject: Digest,
  ): Promise<Digest> {
    const digest = sha256(bytes);
    const res = await this.#req(
      `put referrer ${this.#name}@${digest}`,
      this.#url(`manifests/${digest}`),
      { method: 'PUT', headers: { 'content-type': mediaType }, body: bytes },
      [200, 201, 202],
    );
    await res.discard();
    if (res.headers.get('oci-subject')) return digest;
    const current = await this.#fallbackReferrers(subject);
    const entry: Descriptor = { ...desc, mediaType, digest, size: bytes.length };
    const manifests = current.manifests.filter((m) => m.digest !== digest).concat([entry]);
    const next = JSON.stringify({ ...current, schemaVersion: 2, mediaType: MediaType.OciIndex, manifests });
    await this.putManifest(referrersTag(subject), Buffer.from(next), MediaType.OciIndex);
    return digest;
  }
}

/** referrersTag is the tag-schema fallback tag for a subject digest: `sha256-<hex>`. */
export function referrersTag(d: Digest): string {
  return `${d.slice(0, d.indexOf(':'))}-${hexOf(d)}`;
}

function emptyIndex(): Index {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
}

// Reads an upload session URL from Location (absolute or relative to the request URL).
function uploadLocation(res: HttpResponse, base: string, what: string): URL {
  const loc = res.headers.get('location');
  if (!loc) throw new KilnError(`${what}: registry answered ${res.status} without a Location header`);
  return new URL(loc, base);
}

function manifestMediaType(contentType: string | null, bytes: Uint8Array): string {
  const ct = (contentType ?? '').split(';')[0]!.trim();
  if (ct && ct !== 'application/json' && ct !== 'text/plain' && ct !== 'application/octet-stream') return ct;
  try {
    const j = JSON.parse(Buffer.from(bytes).toString('utf8')) as { mediaType?: unknown; manifests?: unknown };
    if (typeof j.mediaType === 'string') return j.mediaType;
    return Array.isArray(j.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  } catch {
    // Sniffing only: bytes that are not JSON fall back to the Content-Type.
    return ct || MediaType.OciManifest;
  }
}

async function readAll(res: HttpResponse, limit: number, what: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new KilnError(`${what}: response larger than ${limit} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

async function readStream(src: Readable, size: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of src) {
    n += (c as Buffer).length;
    if (n > size) throw new KilnError(`${what}: source has more than ${size} bytes`);
    chunks.push(c as Buffer);
  }
  if (n !== size) throw new KilnError(`${what}: source has ${n} bytes, expected ${size}`);
  return Buffer.concat(chunks);
}

// ChunkReader hands out consecutive exact-length slices of one stream as async iterables, so each
// PATCH streams its bytes without buffering the chunk.
class ChunkReader {
  readonly #it: AsyncIterator<Buffer>;
  #rest: Buffer | undefined;
  #done = false;

  constructor(src: Readable) {
    this.#it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  async *take(n: number, onBytes: (sent: number) => void): AsyncGenerator<Buffer> {
    let left = n;
    let sent = 0;
    while (left > 0) {
      let c = this.#rest;
      this.#rest = undefined;
      if (!c) {
        const r = await this.#it.next();
        if (r.done) {
          this.#done = true;
          throw new KilnError(`upload: source ended ${left} bytes early`);
        }
        c = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
        collectYoung(c.length);
      }
      if (c.length > left) {
        this.#rest = c.subarray(left);
        c = c.subarray(0, left);
      }
      left -= c.length;
      sent += c.length;
      onBytes(sent);
      yield c;
    }
  }

  async atEnd(): Promise<boolean> {
    if (this.#rest && this.#rest.length > 0) return false;
    if (this.#done) return true;
    for (;;) {
      const r = await this.#it.next();
      if (r.done) return true;
      if (r.value.length > 0) return false;
    }
  }
}
