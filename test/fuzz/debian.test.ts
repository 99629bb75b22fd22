import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { readArIndex } from '../../src/debian/ar.ts';
import { canonicalName, formatParagraph, parseDeb822 } from '../../src/debian/deb822.ts';
import { packageFromParagraph, parseRelations } from '../../src/debian/package.ts';
import { compareVersions, parseVersion } from '../../src/debian/version.ts';
import { KilnError } from '../../src/internal/errors.ts';
import { expectCleanError, nastyString, params } from './fuzz.ts';

// Property-based fuzzing of what kiln reads from the Debian archive and from .deb files: deb822
// paragraphs (Packages, Release, control files), the ar container of a .deb, package records,
// dependency relations and versions. Each gives a value or one clean error line.

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzz-deb-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const SAMPLE = `Package: libc6
Version: 2.36-9+deb12u4
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1, libcrypt1 (>= 1:4.4.10-10~) | foo:any [amd64] <!nocheck>
Description: GNU C Library: Shared libraries
 Contains the standard libraries.
 .
 More text.
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb
Size: 2757936
SHA256: ${'0'.repeat(64)}

# a comment
Package: b
Version: 1
`;

const line = fc.oneof(
  fc.constantFrom(
    'Package: a',
    'Version: 1.0-1',
    'Depends: a (>= 1) | b',
    ' continued',
    '\t tabbed',
    ' .',
    '',
    '# comment',
    'Key:',
    ':value',
    'NoColon',
    '  ',
    '\r',
    'Size: 12',
    'SHA256: x',
  ),
  nastyString(30),
);
const text = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.array(line, { maxLength: 20 }), fc.constantFrom('\n', '\r\n'))
      .map(([l, eol]) => l.join(eol)),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.nat({ max: SAMPLE.length }), fc.nat({ max: 10 }), nastyString(6))
      .map(([at, del, ins]) => SAMPLE.slice(0, at) + ins + SAMPLE.slice(at + del)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('latin1')) },
);

describe('fuzz: deb822', () => {
  test('paragraphs or one SyntaxError line; what parses survives formatParagraph', () => {
    fc.assert(
      fc.property(text, (t) => {
        let ps: ReturnType<typeof parseDeb822>;
        try {
          ps = parseDeb822(t);
        } catch (e) {
          expectCleanError(e, [SyntaxError], /^deb822: line \d+: /);
          return;
        }
        for (const p of ps) assert.ok(p.size > 0);
        const again = parseDeb822(
          ps.map((p) => formatParagraph([...p].map(([k, v]) => [canonicalName(k), v]))).join('\n'),
        );
        assert.deepEqual(
          again.map((p) => [...p]),
          ps.map((p) => [...p]),
        );
      }),
      params(2000),
    );
  });

  test('package records: a record with a real size and digest, or one TypeError line', () => {
    fc.assert(
      fc.property(text, (t) => {
        let ps: ReturnType<typeof parseDeb822>;
        try {
          ps = parseDeb822(t);
        } catch {
          return;
        }
        for (const p of ps) {
          try {
            const r = packageFromParagraph(p, 'bookworm');
            assert.ok(Number.isSafeInteger(r.size) && r.size >= 0, `size ${r.size}`);
            assert.match(r.sha256, /^[0-9a-f]{64}$/);
            parseRelations(r.depends);
          } catch (e) {
            expectCleanError(e, [TypeError]);
          }
        }
      }),
      params(2000),
    );
  });
});

describe('fuzz: Debian versions and relations', () => {
  const version = fc.oneof(
    fc
      .array(fc.constantFrom('1', '0', '9', '.', '~', '+', '-', ':', 'a', 'Z', '99999999999999999999'), {
        maxLength: 10,
      })
      .map((p) => p.join('')),
    nastyString(12),
  );
  test('parseVersion gives a version or one TypeError line; compareVersions is a total order', () => {
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        const ok: string[] = [];
        for (const v of [a, b, c]) {
          try {
            parseVersion(v);
            ok.push(v);
          } catch (e) {
            expectCleanError(e, [TypeError], /^invalid Debian version/);
          }
        }
        for (const x of ok) {
          assert.equal(compareVersions(x, x), 0);
          for (const y of ok) {
            assert.equal(Math.sign(compareVersions(x, y)), -Math.sign(compareVersions(y, x)) || 0);
            for (const z of ok)
              if (compareVersions(x, y) <= 0 && compareVersions(y, z) <= 0)
                assert.ok(compareVersions(x, z) <= 0);
          }
        }
      }),
      params(2000),
    );
  });
  test('parseRelations gives clauses or one TypeError line, quickly, for any field', () => {
    const piece = fc.oneof(
      fc.constantFrom(
        'a',
        'libc6',
        ':any',
        ' (>= 1.0)',
        '(',
        ')',
        '|',
        ',',
        ' ',
        '[amd64]',
        '<!nocheck>',
        '<',
        '>',
        '>=',
      ),
      nastyString(5),
    );
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 40 }).map((p) => p.join('')),
        (f) => {
          const start = performance.now();
          try {
            parseRelations(f);
          } catch (e) {
            expectCleanError(e, [TypeError], /^invalid dependency /);
          }
          assert.ok(performance.now() - start < 200, 'slow relation parse');
        },
      ),
      params(2000),
    );
  });
});

describe('fuzz: ar archives', () => {
  function member(name: string, size: string, body: Uint8Array, end = '`\n'): Buffer {
    const h = Buffer.alloc(60, 0x20);
    h.write(name.slice(0, 16), 0, 'latin1');
    h.write('0', 16, 'latin1');
    h.write(size.slice(0, 10), 48, 'latin1');
    h.write(end, 58, 'latin1');
    return Buffer.concat([h, Buffer.from(body), body.length % 2 ? Buffer.from('\n') : Buffer.alloc(0)]);
  }
  const arch = fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .array(
          fc.record({
            name: fc.oneof(
              fc.constantFrom('debian-binary', 'control.tar.xz', 'data.tar.xz', '/', '//', ''),
              nastyString(16),
            ),
            body: fc.uint8Array({ maxLength: 64 }),
            size: fc.constantFrom('exact', 'exact', 'exact', 'big', 'neg', 'junk', 'huge'),
            end: fc.constantFrom('`\n', '`\n', '`\n', 'xx'),
          }),
          { maxLength: 5 },
        )
        .chain((ms) =>
          fc.nat({ max: 200 }).map((cut) => {
            const b = Buffer.concat([
              Buffer.from('!<arch>\n'),
              ...ms.map((m) =>
                member(
                  m.name,
                  m.size === 'exact'
                    ? String(m.body.length)
                    : m.size === 'big'
                      ? String(m.body.length + 100)
                      : m.size === 'neg'
                        ? '-5'
                        : m.size === 'junk'
                          ? '1e3'
                          : '99999999999999999999',
                  m.body,
                  m.end,
                ),
              ),
            ]);
            return cut < 20 ? b.subarray(0, Math.floor((b.length * cut) / 20)) : b;
          }),
        ),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  );
  test('members inside the file, or one KilnError line', async () => {
    const file = path.join(tmp, 'x.deb');
    await fc.assert(
      fc.asyncProperty(arch, async (bytes) => {
        fs.writeFileSync(file, bytes);
        let ms: Awaited<ReturnType<typeof readArIndex>>;
        try {
          ms = await readArIndex(file);
        } catch (e) {
          expectCleanError(e, [KilnError], new RegExp(`^${file}: `));
          return;
        }
        for (const m of ms) {
          assert.ok(Number.isSafeInteger(m.size) && m.size >= 0);
          assert.ok(m.offset >= 68 && m.offset + m.size <= bytes.length);
        }
      }),
      params(1000),
    );
  });
});

// Shrunk counterexamples the fuzzer found, kept as explicit cases.
describe('fuzz regressions: Debian', () => {
  const oneLineError = (f: () => unknown, cls: typeof TypeError | typeof SyntaxError, re: RegExp) =>
    assert.throws(f, (e: Error) => {
      expectCleanError(e, [cls], re);
      return true;
    });
  test('control characters in deb822 lines, versions and dependencies stay on one line', () => {
    oneLineError(() => parseDeb822('\u0000\r\r\nPackage: a'), SyntaxError, /got "\\u0000\\r"$/);
    oneLineError(
      () => parseVersion('\u0000\r'),
      TypeError,
      /^invalid Debian version "\\u0000\\r": bad character$/,
    );
    oneLineError(() => parseRelations('a\nb'), TypeError, /^invalid dependency "a\\nb"$/);
  });
  test('a Size that is not a number, a bad SHA256 or a package name with "/" is refused (Size was NaN)', () => {
    const para = (over: string) =>
      parseDeb822(
        SAMPLE.split('\n\n')[0]!.replace(new RegExp(`^${over.slice(0, over.indexOf(':'))}: .*$`, 'm'), over),
      )[0]!;
    oneLineError(
      () => packageFromParagraph(para('Size:\u0000 2757936'), 'bookworm'),
      TypeError,
      /Size ".*" is not a byte count$/,
    );
    oneLineError(
      () => packageFromParagraph(para('SHA256: zz'), 'bookworm'),
      TypeError,
      /SHA256 "zz" is not 64 lowercase hex digits$/,
    );
    oneLineError(
      () => packageFromParagraph(para('Package: ../../etc/x'), 'bookworm'),
      TypeError,
      /is not a Debian package name$/,
    );
    oneLineError(
      () => packageFromParagraph(para('Package:\u0000\rVersion: 1'), 'bookworm'),
      TypeError,
      /is not a Debian package name$/,
    );
  });
  test('a field named __proto__ or constructor keeps its name when written back (was "[object Object]")', () => {
    assert.equal(canonicalName('__proto__'), '__proto__');
    assert.equal(canonicalName('constructor'), 'Constructor');
    const [p] = parseDeb822('__proto__: x\nconstructor: y\n');
    assert.equal(
      formatParagraph([...p!].map(([k, v]) => [canonicalName(k), v])),
      '__proto__: x\nConstructor: y\n',
    );
  });
  test('an ar member name with a newline stays on one line', async () => {
    const file = path.join(tmp, 'nl.deb');
    const h = Buffer.alloc(60, 0x20);
    h.write('\n=.', 0, 'latin1');
    h.write('1e3', 48, 'latin1');
    h.write('`\n', 58, 'latin1');
    fs.writeFileSync(file, Buffer.concat([Buffer.from('!<arch>\n'), h, Buffer.from('x')]));
    await assert.rejects(readArIndex(file), (e: Error) => {
      expectCleanError(e, [KilnError], /ar member "\\n=\." runs past the end of the file$/);
      return true;
    });
  });
});
