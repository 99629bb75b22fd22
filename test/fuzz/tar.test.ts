import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { extract, UnsafeTarError } from '../../src/layers/extract.ts';
import { readTar, TarFormatError } from '../../src/layers/tar-reader.ts';
import { type TarEntry, tarChunks } from '../../src/layers/tar-writer.ts';
import { expectCleanError, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of the tar reader and the layer extractor: archives come from registries,
// builders and caches, so any byte sequence must give entries or one TarFormatError/UnsafeTarError,
// never a crash, a hang, or a write outside the destination directory.

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzz-tar-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- raw tar construction (a writer that will write anything) ----

interface RawEntry {
  readonly name: string;
  readonly prefix: string;
  readonly typeflag: string;
  readonly linkname: string;
  readonly mode: string;
  readonly uid: string;
  readonly gid: string;
  readonly mtime: string;
  /** Declared size field (octal text, or a base-256 number). */
  readonly size: string | bigint;
  readonly magic: string;
  readonly body: Uint8Array;
  readonly badChecksum: boolean;
}

function put(b: Buffer, off: number, len: number, s: string | Uint8Array): void {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
  bytes.copy(b, off, 0, Math.min(len, bytes.length));
}

function header(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  put(h, 0, 100, e.name);
  put(h, 100, 8, e.mode);
  put(h, 108, 8, e.uid);
  put(h, 116, 8, e.gid);
  if (typeof e.size === 'bigint') {
    // GNU base-256: marker bit, then big-endian.
    let v = e.size;
    for (let i = 11; i >= 1; i--) {
      h[124 + i] = Number(v & 0xffn);
      v >>= 8n;
    }
    h[124] = 0x80 | Number(v & 0x7fn);
  } else put(h, 124, 12, e.size);
  put(h, 136, 12, e.mtime);
  put(h, 156, 1, e.typeflag);
  put(h, 157, 100, e.linkname);
  put(h, 257, 8, e.magic);
  put(h, 345, 155, e.prefix);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of h) sum += x;
  put(h, 148, 8, `${(e.badChecksum ? sum + 1 : sum).toString(8).padStart(6, '0')}\0 `);
  return h;
}

function archive(
  entries: readonly RawEntry[],
  end: boolean,
  cut: number | undefined,
  tail: Uint8Array,
): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    parts.push(header(e));
    parts.push(Buffer.from(e.body));
    const pad = (512 - (e.body.length % 512)) % 512;
    parts.push(Buffer.alloc(pad));
  }
  if (end) parts.push(Buffer.alloc(1024));
  let out = Buffer.concat(parts);
  if (cut !== undefined) out = out.subarray(0, Math.floor(cut * out.length));
  return Buffer.concat([out, Buffer.from(tail)]);
}

function paxBody(records: readonly (readonly [string, string])[]): Uint8Array {
  let s = '';
  for (const [k, v] of records) {
    const rec = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(rec);
    len += String(len).length;
    if (String(len).length !== String(len - String(len).length).length) len++;
    s += `${len}${rec}`;
  }
  return Buffer.from(s, 'utf8');
}

// The outside world an archive tries to reach: a sibling of the destination, named both
// relatively and absolutely, plus long and odd names.
function component(outside: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 40, arbitrary: fc.constantFrom('a', 'b', 'c', 'ln', 'd/e', '.', '', 'canary', 'dir', 'link') },
    { weight: 2, arbitrary: fc.constantFrom('..', '../outside', outside) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '.wh.a',
        '.wh.b',
        '.wh..wh..opq',
        '.wh..',
        '.wh.',
        'x'.repeat(256),
        'é'.repeat(130),
      ),
    },
    { weight: 1, arbitrary: nastyString(8) },
  );
}

function entryPath(outside: string): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.oneof(
        { weight: 30, arbitrary: fc.constantFrom('', './') },
        { weight: 1, arbitrary: fc.constantFrom('/', `${outside}/`) },
      ),
      fc.array(component(outside), { minLength: 1, maxLength: 4 }),
      fc.constantFrom('', '', '/'),
    )
    .map(([lead, parts, trail]) => lead + parts.join('/') + trail);
}

/** Paths near and beyond the kernel's limits (deep, or one long symlink target). */
const longPath = fc.constantFrom(
  `${'d/'.repeat(2100)}f`,
  'y/'.repeat(1030),
  'é'.repeat(2100),
  `a/${'z'.repeat(255)}`,
);

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

function rawEntry(outside: string): fc.Arbitrary<RawEntry[]> {
  const typeflag = fc.oneof(
    { weight: 40, arbitrary: fc.constantFrom('0', '5', '2', '1', '\0') },
    { weight: 1, arbitrary: fc.constantFrom('7', '3', '4', '6', 'S', 'V', 'D', 'M') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }) },
  );
  const numField = (width: number) =>
    fc.oneof(
      { weight: 200, arbitrary: fc.nat({ max: 0o7777 }).map((n) => octal(n, width)) },
      {
        weight: 1,
        arbitrary: fc.constantFrom('', '9', '-1', ' 17 ', '\0\0', '77777777777777'.slice(0, width)),
      },
    );
  const body = fc.uint8Array({ maxLength: 1100 });
  const base = fc
    .record({
      name: fc.oneof({ weight: 20, arbitrary: entryPath(outside) }, { weight: 1, arbitrary: longPath }),
      prefix: fc.oneof(
        { weight: 5, arbitrary: fc.constant('') },
        { weight: 1, arbitrary: entryPath(outside) },
      ),
      typeflag,
      linkname: fc.oneof(
        entryPath(outside),
        longPath,
        fc.constantFrom('', '/', '..', '../outside/canary', `${outside}/canary`, '../..', 'a/../../outside'),
      ),
      mode: numField(8),
      uid: numField(8),
      gid: numField(8),
      mtime: numField(12),
      magic: fc.constantFrom('ustar\u000000', 'ustar  \0', '', 'ustar\u0000'),
      body,
      sizeKind: fc.oneof(
        { weight: 100, arbitrary: fc.constant('exact') },
        { weight: 3, arbitrary: fc.constantFrom('short', 'long', 'base256') },
        { weight: 1, arbitrary: fc.constant('garbage') },
      ),
      badChecksum: fc.nat({ max: 199 }).map((n) => n === 0),
    })
    .map((r): RawEntry => {
      const n = r.body.length;
      const size =
        r.sizeKind === 'exact'
          ? octal(n, 12)
          : r.sizeKind === 'short'
            ? octal(Math.max(0, n - 7), 12)
            : r.sizeKind === 'long'
              ? octal(n + 513, 12)
              : r.sizeKind === 'base256'
                ? BigInt(n)
                : '8x';
      return { ...r, size };
    });
  const paxKey = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom(
        'path',
        'linkpath',
        'size',
        'mtime',
        'uid',
        'gid',
        'uname',
        'SCHILY.xattr.user.a',
      ),
    },
    { weight: 1, arbitrary: nastyString(6) },
  );
  const paxValue = fc.oneof(
    entryPath(outside),
    longPath,
    fc.constantFrom(
      '0',
      '12',
      '-1',
      'NaN',
      '1e400',
      '1.5',
      '99999999999999999999',
      '0x10',
      ' 3',
      '',
      'Infinity',
      '-1e30',
      '9007199254740993',
    ),
    nastyString(10),
  );
  const ext = fc
    .record({
      flag: fc.constantFrom('x', 'g', 'L', 'K'),
      records: fc.array(fc.tuple(paxKey, paxValue), { minLength: 1, maxLength: 3 }),
      longName: entryPath(outside),
      garbage: fc.nat({ max: 9 }).map((n) => n === 0),
      raw: fc.uint8Array({ maxLength: 40 }),
    })
    .map(({ flag, records, longName, garbage, raw }): RawEntry => {
      const b = garbage
        ? raw
        : flag === 'x' || flag === 'g'
          ? paxBody(records)
          : Buffer.from(`${longName}\0`);
      return {
        name: '././@PaxHeader',
        prefix: '',
        typeflag: flag,
        linkname: '',
        mode: octal(0o644, 8),
        uid: octal(0, 8),
        gid: octal(0, 8),
        mtime: octal(0, 12),
        size: octal(b.length, 12),
        magic: 'ustar\u000000',
        body: b,
        badChecksum: false,
      };
    });
  // Sequences that swap what a path means after kiln saw it: an entry under X, then X replaced by
  // a symlink out of the root (or a loop), then maybe another entry under X.
  const escapeTarget = fc.constantFrom(
    '../outside',
    '../../outside',
    outside,
    `${outside}/dir`,
    '.',
    'X',
    '/',
  );
  const swap = fc
    .tuple(
      fc.constantFrom('X', 'X/Y', 'a/X'),
      fc.constantFrom('dir', 'canary', 'link', 'new'),
      fc.constantFrom('5', '5', '0', '2', '1'),
      escapeTarget,
      fc.option(fc.constantFrom('5', '0', '1'), { freq: 2 }),
      base,
    )
    .map(([x, leaf, firstType, target, thenType, tmpl]) => {
      const e = (name: string, typeflag: string, linkname = ''): RawEntry => ({
        ...tmpl,
        name,
        prefix: '',
        typeflag,
        linkname,
        size: octal(typeflag === '0' ? tmpl.body.length : 0, 12),
        body: typeflag === '0' ? tmpl.body : new Uint8Array(),
        badChecksum: false,
      });
      const first = e(`${x}/${leaf}`, firstType, firstType === '1' ? 'a' : firstType === '2' ? target : '');
      const out = [first, e(x, '2', target)];
      if (thenType !== null) out.push(e(`${x}/${leaf}`, thenType, thenType === '1' ? `${x}/${leaf}` : ''));
      return out;
    });
  return fc.oneof(
    { weight: 6, arbitrary: base.map((e) => [e]) },
    { weight: 2, arbitrary: fc.tuple(ext, base).map(([x, e]) => [x, e]) },
    { weight: 2, arbitrary: swap },
  );
}

function tarInput(outside: string): fc.Arbitrary<Buffer> {
  return fc
    .record({
      // Short archives too: one refused entry anywhere skips the final pass over directories.
      entries: fc
        .oneof(
          fc.array(rawEntry(outside), { minLength: 1, maxLength: 8 }),
          fc.array(rawEntry(outside), { minLength: 1, maxLength: 2 }),
        )
        .map((l) => l.flat()),
      end: fc.nat({ max: 5 }).map((n) => n !== 0),
      cut: fc.oneof(
        { weight: 8, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
      ),
      tail: fc.oneof(
        { weight: 5, arbitrary: fc.constant(new Uint8Array()) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }) },
      ),
    })
    .map(({ entries, end, cut, tail }) => archive(entries, end, cut, tail));
}

/** chunked feeds bytes in arbitrary slices, so headers straddle chunk boundaries. */
function chunked(bytes: Uint8Array, size: number): Readable {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(Buffer.from(bytes.subarray(i, i + size)));
  return Readable.from(out, { objectMode: false });
}

async function drain(src: Readable, readBodies: boolean): Promise<number> {
  let n = 0;
  for await (const e of readTar(src)) {
    n++;
    if (readBodies) for await (const _ of e.body) n++;
  }
  return n;
}

// ---- the outside world and its snapshot ----

const OUTSIDE_NAME = 'outside';

function makeWorld(base: string): { base: string; dest: string; outside: string } {
  const outside = path.join(base, OUTSIDE_NAME);
  const dest = path.join(base, 'dest');
  fs.rmSync(dest, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
  fs.mkdirSync(path.join(outside, 'dir'), { recursive: true });
  fs.writeFileSync(path.join(outside, 'canary'), 'host secret\n', { mode: 0o600 });
  fs.writeFileSync(path.join(outside, 'dir', 'file'), 'host file\n', { mode: 0o644 });
  fs.symlinkSync('canary', path.join(outside, 'link'));
  for (const p of ['canary', 'dir/file', 'dir', '.']) fs.utimesSync(path.join(outside, p), 1000, 1000);
  fs.utimesSync(base, 1000, 1000);
  return { base, dest, outside };
}

/** snapshot describes everything under `base` except `dest`: names, types, modes, owners, link counts, times, contents. */
function snapshot(base: string, dest: string): string {
  const lines: string[] = [];
  const walk = (p: string) => {
    if (p === dest) return;
    const st = fs.lstatSync(p);
    if (p === base) {
      // The base itself changes when dest comes and goes; only what is in it matters.
      for (const c of fs.readdirSync(p).sort()) walk(path.join(p, c));
      return;
    }
    let what = '';
    if (st.isSymbolicLink()) what = `-> ${fs.readlinkSync(p)}`;
    else if (st.isFile()) what = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    lines.push(
      `${path.relative(base, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} n${st.nlink} ${st.size} ${st.mtimeMs} ${what}`,
    );
    if (st.isDirectory()) for (const c of fs.readdirSync(p).sort()) walk(path.join(p, c));
  };
  walk(base);
  return lines.join('\n');
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} hung for ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---- properties ----

describe('fuzz: tar reader', () => {
  test('raw garbage: entries or a TarFormatError, never a crash or a hang', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 3000 }),
        fc.integer({ min: 1, max: 700 }),
        fc.boolean(),
        async (bytes, cs, bodies) => {
          try {
            await withTimeout(drain(chunked(bytes, cs), bodies), 5000, 'readTar');
          } catch (e) {
            expectCleanError(e, [TarFormatError]);
          }
        },
      ),
      params(600),
    );
  });

  test('adversarial archives: entries or a TarFormatError, whatever the header fields', async () => {
    await fc.assert(
      fc.asyncProperty(
        tarInput('/tmp/kiln-fuzz-outside'),
        fc.integer({ min: 1, max: 1500 }),
        fc.boolean(),
        async (bytes, cs, bodies) => {
          try {
            await withTimeout(drain(chunked(bytes, cs), bodies), 5000, 'readTar');
          } catch (e) {
            expectCleanError(e, [TarFormatError]);
          }
        },
      ),
      params(600),
    );
  });

  test('writer → reader round trip gives the same entries', async () => {
    const name = fc
      .array(
        fc.oneof(
          fc.constantFrom('a', 'b', 'é', 'x'.repeat(120), ' sp', '.hidden'),
          fc
            .string({ unit: 'grapheme', minLength: 1, maxLength: 30 })
            .filter((s) => !s.includes('/') && s !== '.' && s !== '..' && !s.includes('\0')),
        ),
        { minLength: 1, maxLength: 4 },
      )
      .map((p) => p.join('/'));
    const entry = fc.record({
      path: name,
      type: fc.constantFrom('file', 'dir', 'symlink'),
      mode: fc.nat({ max: 0o7777 }),
      uid: fc.oneof(fc.nat({ max: 65535 }), fc.constant(0o7777777 + 1), fc.nat()),
      gid: fc.nat({ max: 0o7777777 * 2 }),
      body: fc.uint8Array({ maxLength: 2000 }),
      linkname: fc.string({ maxLength: 200 }).filter((s) => s !== '' && !s.includes('\0')),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(entry, { selector: (e) => e.path.normalize(), maxLength: 6 }),
        fc.integer({ min: 1, max: 900 }),
        async (list, cs) => {
          // Paths that name each other's parents as files make no sense to a writer; keep files at leaves.
          const dirs = new Set(
            list.flatMap((e) =>
              e.path
                .split('/')
                .slice(0, -1)
                .map((_, i, a) => a.slice(0, i + 1).join('/')),
            ),
          );
          const entries: TarEntry[] = list
            .filter((e) => !dirs.has(e.path) || e.type === 'dir')
            .filter((e, i, a) => a.findIndex((o) => Buffer.from(o.path).equals(Buffer.from(e.path))) === i)
            .map((e) =>
              e.type === 'file'
                ? {
                    path: e.path,
                    type: 'file',
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    size: e.body.length,
                    read: async () => Buffer.from(e.body),
                  }
                : e.type === 'dir'
                  ? { path: e.path, type: 'dir', mode: e.mode, uid: e.uid, gid: e.gid }
                  : {
                      path: e.path,
                      type: 'symlink',
                      mode: e.mode,
                      uid: e.uid,
                      gid: e.gid,
                      linkname: e.linkname,
                    },
            );
          const chunks: Buffer[] = [];
          for await (const c of tarChunks(entries, { epoch: 315532801 })) chunks.push(c);
          const got: {
            path: string;
            type: string;
            mode: number;
            uid: number;
            gid: number;
            linkname: string;
            body: string;
          }[] = [];
          for await (const e of readTar(chunked(Buffer.concat(chunks), cs))) {
            const parts: Buffer[] = [];
            for await (const c of e.body) parts.push(c);
            const h = e.header;
            got.push({
              path: h.path.replace(/\/$/, ''),
              type: h.type,
              mode: h.mode & 0o7777,
              uid: h.uid,
              gid: h.gid,
              linkname: h.linkname,
              body: Buffer.concat(parts).toString('hex'),
            });
          }
          const want = entries
            .map((e) => ({
              path: e.path,
              type: e.type,
              mode: e.mode,
              uid: e.uid,
              gid: e.gid,
              linkname: e.linkname ?? '',
              body: '',
            }))
            .sort((a, b) => a.path.localeCompare(b.path));
          for (const w of want) {
            const src = list.find((l) => l.path === w.path)!;
            if (w.type === 'file') w.body = Buffer.from(src.body).toString('hex');
          }
          // The writer adds parent directories it was not given; compare the given entries.
          const byPath = new Map(got.map((g) => [g.path, g]));
          for (const w of want) assert.deepEqual(byPath.get(w.path), w);
        },
      ),
      params(400),
    );
  });
});

describe('fuzz: extract', () => {
  test('never writes outside the destination; refuses with UnsafeTarError or TarFormatError', async () => {
    // One fixed directory, so that absolute names in the archives can point at its "outside".
    const base = fs.mkdtempSync(path.join(tmp, 'w-'));
    const outside = path.join(base, OUTSIDE_NAME);
    await fc.assert(
      fc.asyncProperty(
        fc.array(tarInput(outside), { minLength: 1, maxLength: 2 }),
        fc.record({
          whiteouts: fc.boolean(),
          owners: fc.boolean(),
          special: fc.constantFrom('error' as const, 'skip' as const),
          times: fc.boolean(),
        }),
        async (layers, opts) => {
          const world = makeWorld(base);
          const before = snapshot(world.base, world.dest);
          for (const bytes of layers) {
            try {
              await withTimeout(extract(chunked(bytes, 4096), world.dest, opts), 10_000, 'extract');
            } catch (e) {
              expectCleanError(e, [UnsafeTarError, TarFormatError]);
            }
            assert.equal(
              snapshot(world.base, world.dest),
              before,
              'something outside the destination changed',
            );
          }
        },
      ),
      params(400),
    );
    fs.rmSync(base, { recursive: true, force: true });
  });
});

// Shrunk counterexamples the fuzzer found, kept as explicit cases.
describe('fuzz regressions: tar', () => {
  const raw = (over: Partial<RawEntry> & { name: string }): RawEntry => {
    const body = over.body ?? new Uint8Array();
    return {
      prefix: '',
      typeflag: '0',
      linkname: '',
      mode: octal(0o644, 8),
      uid: octal(0, 8),
      gid: octal(0, 8),
      mtime: octal(0, 12),
      size: octal(body.length, 12),
      magic: 'ustar\u000000',
      badChecksum: false,
      ...over,
      body,
    };
  };
  const pax = (records: [string, string][]) =>
    raw({ name: 'PaxHeader', typeflag: 'x', body: paxBody(records) });
  const run = async (entries: RawEntry[]) => {
    const dest = fs.mkdtempSync(path.join(tmp, 'r-'));
    try {
      return await extract(Readable.from([archive(entries, true, undefined, new Uint8Array())]), dest, {
        owners: true,
      });
    } finally {
      fs.rmSync(dest, { recursive: true, force: true });
    }
  };
  const refuses = async (
    entries: RawEntry[],
    cls: typeof UnsafeTarError | typeof TarFormatError,
    re: RegExp,
  ) => {
    await assert.rejects(run(entries), (e: Error) => {
      expectCleanError(e, [cls], re);
      return true;
    });
  };

  test('a symlink whose target has a component over 255 bytes, then an entry through it, is refused (was ENAMETOOLONG)', async () => {
    await refuses(
      [pax([['linkpath', 'y'.repeat(300)]]), raw({ name: 'ln', typeflag: '2' }), raw({ name: 'ln/f' })],
      UnsafeTarError,
      /names a component longer than 255 bytes$/,
    );
  });
  test('a directory whose parent later became a symlink to a host directory: the host directory keeps its mode, owner and times (was chmod/chown/utimes through the symlink)', async () => {
    const base = fs.mkdtempSync(path.join(tmp, 'esc-'));
    const host = path.join(base, 'host');
    fs.mkdirSync(host, { mode: 0o755 });
    fs.chmodSync(host, 0o755);
    fs.utimesSync(host, 1000, 1000);
    const before = fs.statSync(host);
    try {
      const r = await extract(
        Readable.from([
          archive(
            [
              raw({ name: 'ln/host', typeflag: '5', mode: octal(0o6777, 8), uid: octal(4242, 8) }),
              raw({ name: 'ln', typeflag: '2', linkname: base }),
            ],
            true,
            undefined,
            new Uint8Array(),
          ),
        ]),
        path.join(base, 'dest'),
        { owners: true },
      );
      assert.equal(r.entries, 2);
      const after = fs.statSync(host);
      assert.deepEqual([after.mode, after.uid, after.mtimeMs], [before.mode, before.uid, before.mtimeMs]);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
  test('a directory whose parent later became a symlink loop is skipped at the end (was ELOOP)', async () => {
    const r = await run([
      raw({ name: 'canary/a', typeflag: '5' }),
      raw({ name: 'canary', typeflag: '2', linkname: 'canary' }),
    ]);
    assert.equal(r.entries, 2);
  });
  test('a symlink with an empty target is refused (was a bare ENOENT from symlink(2))', async () => {
    await refuses(
      [raw({ name: 'a', typeflag: '2', linkname: '' })],
      UnsafeTarError,
      /symlink target "" is empty/,
    );
  });
  test('a symlink target longer than PATH_MAX is refused (was ENAMETOOLONG)', async () => {
    await refuses(
      [pax([['linkpath', 'd/'.repeat(2100)]]), raw({ name: 'a', typeflag: '2' })],
      UnsafeTarError,
      /is empty, too long/,
    );
  });
  test('a non-numeric PAX uid/gid/size/mtime is a TarFormatError (gid=Infinity reached fchown as a RangeError)', async () => {
    for (const [k, v] of [
      ['gid', '1e400'],
      ['uid', 'NaN'],
      ['size', '-1'],
      ['mtime', 'x'],
      ['uid', '4294967296'],
    ] as [string, string][])
      await refuses([pax([[k, v]]), raw({ name: 'f' })], TarFormatError, new RegExp(`PAX record ${k}=`));
  });
  test('a path component longer than 255 bytes is refused (was ENAMETOOLONG)', async () => {
    await refuses(
      [raw({ name: 'x'.repeat(100) }), pax([['path', `a/${'x'.repeat(256)}`]]), raw({ name: 'f' })],
      UnsafeTarError,
      /longer than 255 bytes/,
    );
    await refuses(
      [pax([['path', `${'d/'.repeat(2100)}f`]]), raw({ name: 'f' })],
      UnsafeTarError,
      /path longer than 4095 bytes/,
    );
  });
  test('a directory whose parent a later entry turned into a file is skipped at the end (was ENOTDIR)', async () => {
    const r = await run([raw({ name: 'b/ ', typeflag: '5' }), raw({ name: 'b', body: Buffer.from('x') })]);
    assert.equal(r.entries, 2);
  });
  test('a hard link to itself keeps the file (was ENOENT: the target was removed first)', async () => {
    const r = await run([
      raw({ name: 'ln', body: Buffer.from('x') }),
      raw({ name: 'ln', typeflag: '1', linkname: 'ln' }),
    ]);
    assert.equal(r.entries, 2);
  });
  test('a hard link replacing the directory that holds its source is refused (was ENOENT)', async () => {
    await refuses(
      [raw({ name: 'a/z', body: Buffer.from('x') }), raw({ name: 'a', typeflag: '1', linkname: 'a/z' })],
      UnsafeTarError,
      /was inside the entry it replaces/,
    );
  });
  test('names with newlines and 4 KiB names give one short line', async () => {
    await refuses(
      [raw({ name: '/etc/x\nINJECTED' })],
      UnsafeTarError,
      /^refusing tar entry "\/etc\/x\\nINJECTED": absolute path$/,
    );
    await refuses(
      [pax([['linkpath', `${'q'.repeat(3000)}\n`]]), raw({ name: 'a', typeflag: '1' })],
      UnsafeTarError,
      /q…": a path component is longer than 255 bytes$/,
    );
    await assert.rejects(
      drain(
        Readable.from([archive([raw({ name: 'a\nb', mode: '9\x01x' })], true, undefined, new Uint8Array())]),
        false,
      ),
      (e: Error) => {
        expectCleanError(e, [TarFormatError], /mode is not octal: "9\\u0001x"/);
        return true;
      },
    );
  });
});
