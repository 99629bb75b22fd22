/**
 * Debian version comparison, as dpkg does it (deb-version(7), lib/dpkg/version.c):
 * `[epoch:]upstream[-revision]`, compared part by part; within a part, alternating runs of
 * non-digits (where `~` sorts before everything, even the end of the string, and letters sort
 * before other characters) and digits (compared numerically).
 */

/** DebVersion is a parsed Debian version. */
export interface DebVersion {
  readonly epoch: number;
  readonly upstream: string;
  readonly revision: string;
}

/** parseVersion splits a version string; throws a TypeError for versions dpkg would reject. */
export function parseVersion(v: string): DebVersion {
  const s = v.trim();
  if (s === '') throw new TypeError('invalid Debian version: empty');
  let epoch = 0;
  let rest = s;
  const colon = s.indexOf(':');
  if (colon >= 0) {
    const e = s.slice(0, colon);
    if (!/^\d+$/.test(e))
      throw new TypeError(`invalid Debian version ${JSON.stringify(v)}: epoch is not a number`);
    epoch = Number(e);
    rest = s.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  const upstream = dash >= 0 ? rest.slice(0, dash) : rest;
  const revision = dash >= 0 ? rest.slice(dash + 1) : '';
  if (upstream === '')
    throw new TypeError(`invalid Debian version ${JSON.stringify(v)}: empty upstream version`);
  if (/[^A-Za-z0-9.+~:-]/.test(upstream))
    throw new TypeError(`invalid Debian version ${JSON.stringify(v)}: bad character`);
  if (/[^A-Za-z0-9.+~]/.test(revision))
    throw new TypeError(`invalid Debian version ${JSON.stringify(v)}: bad character in revision`);
  return { epoch, upstream, revision };
}

function order(c: number): number {
  // dpkg's order(): digits 0, letters their code, `~` -1, end 0, everything else code + 256.
  if (c >= 48 && c <= 57) return 0;
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) return c;
  if (c === 126) return -1;
  if (Number.isNaN(c)) return 0;
  return c + 256;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = order(i < a.length ? a.charCodeAt(i) : Number.NaN);
      const bc = order(j < b.length ? b.charCodeAt(j) : Number.NaN);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    while (i < a.length && j < b.length && isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && isDigit(a.charCodeAt(i))) return 1;
    if (j < b.length && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

/** compareVersions returns <0, 0 or >0 as `a` sorts before, equal to or after `b`. */
export function compareVersions(a: string | DebVersion, b: string | DebVersion): number {
  const va = typeof a === 'string' ? parseVersion(a) : a;
  const vb = typeof b === 'string' ? parseVersion(b) : b;
  if (va.epoch !== vb.epoch) return va.epoch - vb.epoch;
  const u = verrevcmp(va.upstream, vb.upstream);
  if (u !== 0) return u;
  return verrevcmp(va.revision, vb.revision);
}

/** Relation is a version constraint operator of a dependency field. */
export type Relation = '<<' | '<=' | '=' | '>=' | '>>';

/** satisfies tells whether version `v` meets `op ref` (`<` and `>` are the obsolete <= and >=). */
export function satisfies(v: string, op: Relation, ref: string): boolean {
  const c = compareVersions(v, ref);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}
