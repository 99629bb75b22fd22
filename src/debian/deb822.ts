/**
 * deb822 is the `Key: value` paragraph format of Debian control files, Packages and Release
 * indexes (deb822(5)). Field names are case-insensitive; continuation lines start with a space
 * or a tab; paragraphs are separated by blank lines.
 */

/** Paragraph is one deb822 stanza: field names as written, in order, with raw values. */
export type Paragraph = ReadonlyMap<string, string>;

/**
 * parseDeb822 splits `text` into paragraphs. Values keep their continuation lines joined with
 * `\n` (the leading space of each continuation line is removed, as deb822 says; a lone `.`
 * line stands for an empty line). Comment lines starting with `#` are skipped. Field names
 * are stored lower-cased so lookups need no case folding; use `field()` to read them.
 */
export function parseDeb822(text: string): Paragraph[] {
  const out: Paragraph[] = [];
  let cur: Map<string, string> | null = null;
  let key = '';
  let lineNo = 0;
  let pos = 0;
  const n = text.length;
  while (pos <= n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    let line = text.slice(pos, end);
    pos = end + 1;
    lineNo++;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') {
      if (cur && cur.size > 0) out.push(cur);
      cur = null;
      if (end === n) break;
      continue;
    }
    const c0 = line.charCodeAt(0);
    if (c0 === 35 /* # */) continue;
    if (c0 === 32 || c0 === 9) {
      if (!cur || key === '')
        throw new SyntaxError(`deb822: line ${lineNo}: continuation line without a field`);
      const body = line.slice(1);
      cur.set(key, `${cur.get(key)}\n${body === '.' ? '' : body}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0)
      throw new SyntaxError(
        `deb822: line ${lineNo}: expected "Field: value", got ${JSON.stringify(line.slice(0, 60))}`,
      );
    key = line.slice(0, colon).toLowerCase();
    if (!cur) cur = new Map();
    cur.set(key, line.slice(colon + 1).trim());
    if (end === n) {
      out.push(cur);
      break;
    }
  }
  if (cur && cur.size > 0 && out[out.length - 1] !== cur) out.push(cur);
  return out;
}

/** field reads a field by name, case-insensitively. */
export function field(p: Paragraph, name: string): string | undefined {
  return p.get(name.toLowerCase());
}

/** requireField reads a field or throws a TypeError naming the field and the paragraph (`what`). */
export function requireField(p: Paragraph, name: string, what: string): string {
  const v = p.get(name.toLowerCase());
  if (v === undefined) throw new TypeError(`${what}: missing field "${name}"`);
  return v;
}

/**
 * formatDeb822 writes paragraphs back in deb822 form. Field names are given as written in
 * `order` (canonical capitalisation); unknown fields keep the capitalisation of `canonicalName`.
 */
export function formatParagraph(fields: ReadonlyArray<readonly [string, string]>): string {
  let s = '';
  for (const [k, v] of fields) {
    const lines = v.split('\n');
    s += `${k}: ${lines[0]}\n`;
    for (const l of lines.slice(1)) s += ` ${l === '' ? '.' : l}\n`;
  }
  return s;
}

// Canonical capitalisation of the control fields dpkg writes, for lower-cased keys we parsed.
const CANONICAL: Record<string, string> = {
  package: 'Package',
  status: 'Status',
  priority: 'Priority',
  section: 'Section',
  'installed-size': 'Installed-Size',
  maintainer: 'Maintainer',
  architecture: 'Architecture',
  'multi-arch': 'Multi-Arch',
  source: 'Source',
  version: 'Version',
  replaces: 'Replaces',
  provides: 'Provides',
  depends: 'Depends',
  'pre-depends': 'Pre-Depends',
  recommends: 'Recommends',
  suggests: 'Suggests',
  conflicts: 'Conflicts',
  breaks: 'Breaks',
  enhances: 'Enhances',
  essential: 'Essential',
  protected: 'Protected',
  'built-using': 'Built-Using',
  conffiles: 'Conffiles',
  description: 'Description',
  homepage: 'Homepage',
  important: 'Important',
  'original-maintainer': 'Original-Maintainer',
  'static-built-using': 'Static-Built-Using',
  'ruby-versions': 'Ruby-Versions',
  'python-version': 'Python-Version',
  'go-import-path': 'Go-Import-Path',
  'rules-requires-root': 'Rules-Requires-Root',
};

/** canonicalName turns a lower-cased field name back into Debian's usual Capitalised-Form. */
export function canonicalName(key: string): string {
  // hasOwn: a field named "constructor" or "__proto__" must not find Object.prototype's members.
  if (Object.hasOwn(CANONICAL, key)) return CANONICAL[key]!;
  return key.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase());
}
