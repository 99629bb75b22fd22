import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KilnError, UsageError } from '../internal/errors.ts';
import type { HttpClient } from '../internal/http/client.ts';
import { extract } from '../layers/extract.ts';
import { BUILDPACKAGE_LIMITS, ExtractBudget } from '../layers/extract-limits.ts';

// pack's other buildpack inputs: `http(s)://` URLs (of a buildpack .tgz or a .cnb buildpackage)
// and `.tgz` (or `.tar`) files of a buildpack directory. A URL is downloaded (bounded) into the
// build's scratch directory; a tarball is unpacked there inertly (no links out of it, no devices,
// no setuid bits, bounded) and becomes a buildpack directory. Everything else passes unchanged.

/** Largest buildpack download. */
const MAX_DOWNLOAD = 1 << 30;

/** Collaborators of localBuildpackRef. */
export interface BuildpackFetch {
  readonly http: HttpClient;
  /** A private directory (removed after the build). */
  readonly scratch: () => string;
}

let counter = 0;

/** localBuildpackRef turns a URL or tarball ref into a local directory or .cnb file; others as given. */
export async function localBuildpackRef(ref: string, f: BuildpackFetch): Promise<string> {
  // pack's name for a buildpack of the builder: its id.
  if (ref.startsWith('urn:cnb:builder:')) return ref.slice('urn:cnb:builder:'.length);
  if (ref === 'from=builder')
    throw new UsageError(
      '--buildpack from=builder: kiln does not splice the builder order into --buildpack lists; name the buildpacks (or use --pre-buildpack/--post-buildpack around the builder order)',
    );
  let file: string | undefined;
  if (/^https?:\/\//i.test(ref)) file = await download(ref, f);
  else if (/\.(tgz|tar\.gz|tar)$/i.test(ref) && (await stat(ref).catch(() => undefined))?.isFile())
    file = ref;
  if (!file) return ref;
  if (await isOciArchive(file)) return file; // a .cnb: read as a buildpackage
  const dir = path.join(f.scratch(), `buildpack-${counter++}`);
  const limits = new ExtractBudget(`--buildpack ${ref}`, BUILDPACKAGE_LIMITS);
  await extract(createReadStream(file), dir, { inert: true, special: 'skip', limits }).catch((e: unknown) => {
    throw new UsageError(`--buildpack ${ref}: not a buildpack tarball: ${(e as Error).message}`);
  });
  // buildpack.toml at the top, or in the one directory the tarball holds.
  if ((await stat(path.join(dir, 'buildpack.toml')).catch(() => undefined))?.isFile()) return dir;
  const top = await readdir(dir, { withFileTypes: true });
  const only = top.length === 1 && top[0]!.isDirectory() ? path.join(dir, top[0]!.name) : undefined;
  if (only && (await stat(path.join(only, 'buildpack.toml')).catch(() => undefined))?.isFile()) return only;
  throw new UsageError(`--buildpack ${ref}: the tarball holds no buildpack.toml`);
}

async function download(url: string, f: BuildpackFetch): Promise<string> {
  const res = await f.http.get(url);
  if (!res.ok) {
    await res.discard();
    throw new KilnError(`--buildpack ${url}: download answered ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_DOWNLOAD) {
    await res.discard();
    throw new KilnError(`--buildpack ${url}: larger than ${MAX_DOWNLOAD} bytes`);
  }
  await mkdir(f.scratch(), { recursive: true });
  const file = path.join(f.scratch(), `download-${counter++}`);
  let n = 0;
  const bound = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > MAX_DOWNLOAD) cb(new KilnError(`--buildpack ${url}: larger than ${MAX_DOWNLOAD} bytes`));
      else cb(null, chunk);
    },
  });
  await pipeline(res.body, bound, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  return file;
}

/** isOciArchive tells a .cnb (an OCI layout tar: its first member is usually oci-layout or blobs/). */
async function isOciArchive(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    if (bytesRead < 512 || head.readUInt16BE(0) === 0x1f8b) return false;
    const name = head.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    return /^(\.\/)?(oci-layout|index\.json|blobs)(\/|$)/.test(name);
  } finally {
    await fh.close();
  }
}
