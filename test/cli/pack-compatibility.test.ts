// The pack compatibility table (docs/pack-compatibility.md) checked against the CLI: every row
// marked `supported` or `different` names a kiln command and flags, and `kiln … --help` must show
// each of them (the command in its parent's help, every flag in the command's own help). One test
// per row, generated from the file, so a renamed or dropped flag fails here naming the row.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runMain } from '../helpers/cli.ts';

const DOC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/pack-compatibility.md');
const home = mkdtempSync(path.join(tmpdir(), 'kiln-packcompat-'));
const env = { HOME: home, PATH: process.env.PATH, KILN_HOME: home };
after(() => rmSync(home, { recursive: true, force: true }));

/** A table row that claims kiln has the thing. */
interface Claim {
  readonly line: number;
  readonly pack: string;
  readonly path: readonly string[];
  readonly flags: readonly string[];
}

function claims(): Claim[] {
  const out: Claim[] = [];
  for (const [i, line] of readFileSync(DOC, 'utf8').split('\n').entries()) {
    const cells = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((c) => c.trim());
    if (cells.length !== 4 || !['supported', 'different'].includes(cells[2]!)) continue;
    const kiln = /`(kiln(?: [^`]*)?)`/.exec(cells[1]!)?.[1];
    assert.ok(kiln, `line ${i + 1}: a ${cells[2]} row names its kiln command in backticks`);
    const words = kiln.split(/\s+/).slice(1);
    out.push({
      line: i + 1,
      pack: cells[0]!,
      path: words.filter((w) => !w.startsWith('-')),
      flags: words.filter((w) => w.startsWith('-')),
    });
  }
  return out;
}

const helpCache = new Map<string, Promise<{ code: number; out: string }>>();
function help(p: readonly string[]) {
  const key = p.join(' ');
  if (!helpCache.has(key))
    helpCache.set(
      key,
      runMain([...p, '--help'], env).then((r) => ({ code: r.code, out: r.out + r.err })),
    );
  return helpCache.get(key)!;
}

const all = claims();

describe('docs/pack-compatibility.md matches the CLI', () => {
  test('the table has rows for pack build and the other commands', () => {
    assert.ok(all.length >= 40, `${all.length} supported or different rows`);
    assert.ok(all.some((c) => c.flags.includes('--volume')));
  });
  for (const c of all) {
    test(`line ${c.line}: ${c.pack} → kiln ${[...c.path, ...c.flags].join(' ')}`, async () => {
      if (c.path.length > 0) {
        const parent = await help(c.path.slice(0, -1));
        const name = c.path[c.path.length - 1]!;
        assert.match(
          parent.out,
          new RegExp(`^\\s+${name}(\\s|\\[|<|$)`, 'm'),
          `${name} is listed in its parent's help`,
        );
      }
      const own = await help(c.path);
      assert.equal(own.code, 0, own.out);
      for (const f of c.flags)
        assert.match(
          own.out,
          new RegExp(`(^|[\\s,])${f}([\\s,]|$)`, 'm'),
          `${f} in kiln ${c.path.join(' ')} --help`,
        );
    });
  }
});
