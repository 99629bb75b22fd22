import { spawn } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { decompress as decompressLayer } from '../oci/compression.ts';

/** Compression of a Debian archive member or index file, from its name's suffix. */
export type DebCompression = 'xz' | 'gz' | 'zst' | 'none';

/** compressionOfName maps `data.tar.xz`, `Packages.gz` and the like to their compression. */
export function compressionOfName(name: string): DebCompression {
  if (name.endsWith('.xz')) return 'xz';
  if (name.endsWith('.gz')) return 'gz';
  if (name.endsWith('.zst')) return 'zst';
  return 'none';
}

/**
 * XzDecoder picks how xz streams are decoded: `process` pipes through the `xz -dc` program
 * (measured faster here, and it decodes on another core while Node writes files), `wasm` uses
 * the xz-decompress package (no external program needed).
 */
export type XzDecoder = 'process' | 'wasm';

/** decompress returns a stream of `input` decoded according to `kind`. Errors surface on the result. */
export function decompress(kind: DebCompression, input: Readable, xz: XzDecoder = 'process'): Readable {
  switch (kind) {
    case 'none':
      return input;
    case 'gz':
      return decompressLayer(input, 'gzip');
    case 'zst':
      return decompressLayer(input, 'zstd');
    case 'xz':
      return xz === 'wasm' ? xzWasm(input) : xzProcess(input);
  }
}

function xzWasm(input: Readable): Readable {
  // The wasm decoder is loaded on first use only (it is the fallback, not the default).
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  import('xz-decompress').then(
    ({ default: xz }) => {
      const web = Readable.toWeb(input) as unknown as ReadableStream<Uint8Array>;
      const decoded = Readable.fromWeb(
        new xz.XzReadableStream(web) as unknown as WebReadableStream<Uint8Array>,
      );
      decoded.on('error', (e) => out.destroy(e));
      decoded.pipe(out);
    },
    (e: Error) => out.destroy(e),
  );
  return out;
}

function xzProcess(input: Readable): Readable {
  const child = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  let stderr = '';
  let failed = false;
  const fail = (e: Error) => {
    if (failed) return;
    failed = true;
    child.kill();
    out.destroy(e);
  };
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.on('error', (e) => fail(new Error(`xz: ${e.message}`)));
  input.on('error', fail);
  child.stdin.on('error', () => {
    /* EPIPE when xz exits early; the exit code reports it */
  });
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  let stdoutDone = false;
  let code: number | null | undefined;
  const finish = () => {
    if (!stdoutDone || code === undefined || failed) return;
    if (code !== 0) fail(new Error(`xz -dc failed (exit ${code}): ${stderr.trim() || 'corrupt input'}`));
    else out.end();
  };
  child.stdout.on('end', () => {
    stdoutDone = true;
    finish();
  });
  child.on('close', (c) => {
    code = c;
    finish();
  });
  out.on('close', () => {
    if (!child.killed && child.exitCode === null) child.kill();
  });
  return out;
}
