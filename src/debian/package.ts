import { type Paragraph, requireField } from './deb822.ts';
import { parseVersion } from './version.ts';

/** PackageRecord is one binary package offered by a Packages index (the fields kiln needs). */
export interface PackageRecord {
  readonly name: string;
  readonly version: string;
  readonly arch: string;
  readonly multiArch: string;
  readonly essential: boolean;
  readonly priority: string;
  readonly source: string;
  readonly preDepends: string;
  readonly depends: string;
  readonly provides: string;
  /** Path of the .deb under the mirror's root. */
  readonly filename: string;
  readonly size: number;
  readonly sha256: string;
  /** Suite the record came from (bookworm, bookworm-security, ...), for the lock and for downloads. */
  readonly suite: string;
}

/** packageFromParagraph picks a PackageRecord out of a Packages paragraph. */
export function packageFromParagraph(p: Paragraph, suite: string): PackageRecord {
  const name = requireField(p, 'Package', `Packages index of ${suite}`);
  // Names and architectures become file names (dpkg's info/<name>[:<arch>].md5sums): only
  // what Debian policy allows, never "/" or "..".
  if (!NAME_RE.test(name))
    throw new TypeError(
      `Packages index of ${suite}: Package ${JSON.stringify(name.slice(0, 80))} is not a Debian package name`,
    );
  const what = `Packages index of ${suite}, package ${name}`;
  const arch = requireField(p, 'Architecture', what);
  if (!ARCH_RE.test(arch))
    throw new TypeError(
      `${what}: Architecture ${JSON.stringify(arch.slice(0, 40))} is not an architecture name`,
    );
  const src = p.get('source') ?? name;
  return {
    name,
    version: versionOf(requireField(p, 'Version', what)),
    arch,
    multiArch: p.get('multi-arch') ?? 'no',
    essential: (p.get('essential') ?? '').toLowerCase() === 'yes',
    priority: p.get('priority') ?? 'optional',
    // "Source: name (version)" when the source version differs; keep only the name.
    source: src.split(' ')[0]!,
    preDepends: p.get('pre-depends') ?? '',
    depends: p.get('depends') ?? '',
    provides: p.get('provides') ?? '',
    filename: requireField(p, 'Filename', what),
    size: sizeOf(requireField(p, 'Size', what), what),
    sha256: sha256Of(requireField(p, 'SHA256', what), what),
    suite,
  };
}

const NAME_RE = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCH_RE = /^[a-z0-9][a-z0-9-]*$/;

function versionOf(text: string): string {
  parseVersion(text); // throws a TypeError naming the version
  return text;
}

// Size and SHA256 decide what is downloaded and what it is checked against: a NaN size or a
// malformed digest must stop here, not reach the download.
function sizeOf(text: string, what: string): number {
  const n = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw new TypeError(`${what}: Size ${JSON.stringify(text.slice(0, 40))} is not a byte count`);
  return n;
}

function sha256Of(text: string, what: string): string {
  if (!/^[0-9a-f]{64}$/.test(text))
    throw new TypeError(
      `${what}: SHA256 ${JSON.stringify(text.slice(0, 80))} is not 64 lowercase hex digits`,
    );
  return text;
}

/** Atom is one alternative of a dependency: `name[:arch] [(op version)]`. */
export interface Atom {
  readonly name: string;
  /** Architecture qualifier (`any`, `native`, or an arch name), when given. */
  readonly archQualifier?: string;
  readonly op?: '<<' | '<=' | '=' | '>=' | '>>';
  readonly version?: string;
}

/** Clause is a list of alternatives (`a | b`); one of them must be installed. */
export type Clause = readonly Atom[];

const ATOM_RE =
  /^([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([0-9A-Za-z][^)\s]*)\s*\))?\s*(?:\[[^\]]*\])?\s*(?:<[^>]*>\s*)*$/i;

/** parseAtom parses one alternative; throws a TypeError naming the field text on bad syntax. */
export function parseAtom(text: string): Atom {
  const m = ATOM_RE.exec(text.trim());
  if (!m) throw new TypeError(`invalid dependency ${JSON.stringify(text.trim())}`);
  let op = m[3] as Atom['op'] | '<' | '>' | undefined;
  // `<` and `>` are the obsolete spellings of <= and >= (deb-control(5)).
  if (op === '<') op = '<=';
  if (op === '>') op = '>=';
  return {
    name: m[1]!,
    ...(m[2] ? { archQualifier: m[2] } : {}),
    ...(op ? { op, version: m[4]! } : {}),
  };
}

/** parseRelations parses a Depends-style field into clauses of alternatives. */
export function parseRelations(field: string): Clause[] {
  if (field.trim() === '') return [];
  return field
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean)
    .map((c) => c.split('|').map(parseAtom));
}

/** formatAtom renders an atom back to dependency syntax, for messages. */
export function formatAtom(a: Atom): string {
  return `${a.name}${a.archQualifier ? `:${a.archQualifier}` : ''}${a.op ? ` (${a.op} ${a.version})` : ''}`;
}
