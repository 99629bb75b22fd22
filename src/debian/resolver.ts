import { KilnError } from '../internal/errors.ts';
import { type Atom, type Clause, formatAtom, type PackageRecord, parseRelations } from './package.ts';
import { compareVersions, satisfies } from './version.ts';

/** Universe is every candidate package of several suites, indexed for resolution. */
export class Universe {
  /** Candidates by name, newest version first (ties: the earlier suite wins). */
  readonly byName: ReadonlyMap<string, readonly PackageRecord[]>;
  /** Providers by virtual name: the package and the provided version, if any. */
  readonly providers: ReadonlyMap<string, readonly { pkg: PackageRecord; version?: string }[]>;
  readonly suites: readonly string[];

  /** `lists` are the packages of each suite in priority order (base suite first). */
  constructor(lists: readonly (readonly PackageRecord[])[], suites: readonly string[]) {
    const byName = new Map<string, PackageRecord[]>();
    const order = new Map<PackageRecord, number>();
    let i = 0;
    for (const list of lists) {
      for (const p of list) {
        order.set(p, i++);
        const l = byName.get(p.name);
        if (l) l.push(p);
        else byName.set(p.name, [p]);
      }
    }
    for (const l of byName.values()) {
      l.sort((a, b) => compareVersions(b.version, a.version) || order.get(a)! - order.get(b)!);
    }
    const providers = new Map<string, { pkg: PackageRecord; version?: string }[]>();
    for (const l of byName.values()) {
      // Only the newest version of each package offers its Provides: that is the one we would pick.
      const p = l[0]!;
      if (!p.provides) continue;
      for (const clause of parseRelations(p.provides)) {
        const a = clause[0]!;
        const entry = a.version ? { pkg: p, version: a.version } : { pkg: p };
        const e = providers.get(a.name);
        if (e) e.push(entry);
        else providers.set(a.name, [entry]);
      }
    }
    for (const e of providers.values())
      e.sort((a, b) => (a.pkg.name < b.pkg.name ? -1 : a.pkg.name > b.pkg.name ? 1 : 0));
    this.byName = byName;
    this.providers = providers;
    this.suites = suites;
  }

  /** newest returns the newest candidate of `name` that satisfies `atom`'s version constraint. */
  newest(atom: Atom): PackageRecord | undefined {
    const l = this.byName.get(atom.name);
    if (!l) return undefined;
    if (!atom.op) return l[0];
    return l.find((p) => satisfies(p.version, atom.op!, atom.version!));
  }
}

/** Resolution is the closed set of packages to install, sorted by name, with why each is there. */
export interface Resolution {
  readonly packages: readonly PackageRecord[];
  /** For each package name, the package that pulled it in (absent for the requested ones). */
  readonly requiredBy: ReadonlyMap<string, string>;
}

/** ResolveOptions tune resolution. */
export interface ResolveOptions {
  /** Also install every `Essential: yes` package (what debootstrap's minbase/essential does). */
  readonly essential?: boolean;
  /**
   * Names never installed: a dependency clause naming one of them counts as met. Run images use
   * this to leave out dpkg, debconf and the shell that maintainer scripts (which never run there)
   * would need.
   */
  readonly exclude?: readonly string[];
}

/**
 * resolve closes `requested` (package names, optionally `name=version`) under Pre-Depends and
 * Depends. Choices are deterministic: a clause already met by a chosen package stays met;
 * otherwise the first alternative with a candidate wins, real packages before virtual ones,
 * the newest version that meets the constraint, providers by name. An unmet clause throws a
 * KilnError naming the chain of packages from a requested one down to the clause.
 */
export function resolve(
  universe: Universe,
  requested: readonly string[],
  opts: ResolveOptions = {},
): Resolution {
  const chosen = new Map<string, PackageRecord>();
  const requiredBy = new Map<string, string>();
  const provided = new Map<string, PackageRecord[]>();
  const excluded = new Set(opts.exclude ?? []);
  const queue: PackageRecord[] = [];

  const chain = (name: string): string => {
    const parts = [name];
    let cur = requiredBy.get(name);
    while (cur !== undefined && parts.length < 50) {
      parts.unshift(cur);
      cur = requiredBy.get(cur);
    }
    return parts.join(' -> ');
  };

  const choose = (p: PackageRecord, by: string | undefined) => {
    if (chosen.has(p.name)) return;
    chosen.set(p.name, p);
    if (by !== undefined) requiredBy.set(p.name, by);
    for (const clause of parseRelations(p.provides)) {
      const a = clause[0]!;
      const l = provided.get(a.name);
      if (l) l.push(p);
      else provided.set(a.name, [p]);
    }
    queue.push(p);
  };

  const roots: string[] = [...requested];
  if (opts.essential) {
    const ess = [...universe.byName.values()]
      .map((l) => l[0]!)
      .filter((p) => p.essential && !excluded.has(p.name));
    roots.push(...ess.map((p) => p.name).sort());
  }
  for (const r of roots) {
    const [name, version] = r.split('=') as [string, string | undefined];
    const atom: Atom = version ? { name, op: '=', version } : { name };
    const p = universe.newest(atom);
    if (!p) {
      const have = universe.byName.get(name);
      const why = have
        ? `no version ${version} (have ${have.map((h) => h.version).join(', ')})`
        : 'no such package';
      throw new KilnError(`cannot resolve package ${r}: ${why} in suites ${universe.suites.join(', ')}`);
    }
    choose(p, undefined);
  }

  const met = (a: Atom): boolean => {
    const p = chosen.get(a.name);
    if (p && (!a.op || satisfies(p.version, a.op, a.version!))) return true;
    // A versioned dependency is met by a Provides only when the Provides is versioned too.
    for (const prov of provided.get(a.name) ?? []) {
      if (!a.op) return true;
      for (const c of parseRelations(prov.provides)) {
        const pa = c[0]!;
        if (pa.name === a.name && pa.version && satisfies(pa.version, a.op, a.version!)) return true;
      }
    }
    return false;
  };

  const pick = (a: Atom): PackageRecord | undefined => {
    if (excluded.has(a.name)) return undefined;
    const real = universe.newest(a);
    if (real) {
      const already = chosen.get(a.name);
      return already ?? real;
    }
    for (const prov of universe.providers.get(a.name) ?? []) {
      if (excluded.has(prov.pkg.name)) continue;
      if (!a.op) return prov.pkg;
      if (prov.version && satisfies(prov.version, a.op, a.version!)) return prov.pkg;
    }
    return undefined;
  };

  while (queue.length > 0) {
    const p = queue.shift()!;
    const clauses: Clause[] = [...parseRelations(p.preDepends), ...parseRelations(p.depends)];
    for (const clause of clauses) {
      // An excluded name counts as met: the image deliberately goes without it (distroless).
      if (clause.some((a) => excluded.has(a.name) || met(a))) continue;
      let found: PackageRecord | undefined;
      for (const a of clause) {
        found = pick(a);
        if (found) break;
      }
      const text = clause.map(formatAtom).join(' | ');
      if (!found) {
        throw new KilnError(
          `unsatisfiable dependency: ${chain(p.name)} needs ${text}: no candidate in suites ${universe.suites.join(', ')}`,
        );
      }
      if (chosen.has(found.name)) {
        const have = chosen.get(found.name)!;
        throw new KilnError(
          `unsatisfiable dependency: ${chain(p.name)} needs ${text}, but ${have.name} ${have.version} was already chosen (for ${chain(have.name)})`,
        );
      }
      choose(found, p.name);
    }
  }
  const packages = [...chosen.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { packages, requiredBy };
}
