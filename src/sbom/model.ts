import { createRequire } from 'node:module';

// packageurl-js sets up an Intl.Collator (and sorts with it) as it loads, ~20 ms: loaded on the
// first purl instead of with every command that imports this module (kiln build's start-up time).
type PackageUrlModule = typeof import('packageurl-js');
let packageUrl: PackageUrlModule | undefined;
const loadPackageUrl = (): PackageUrlModule =>
  (packageUrl ??= createRequire(import.meta.url)('packageurl-js') as PackageUrlModule);

/**
 * SbomComponent is one software package in an SBOM, independent of the output format. The stack
 * makes them from Debian packages; the lifecycle and buildpacks can make them from npm packages
 * or anything with a purl, and the writers below render either.
 */
export interface SbomComponent {
  readonly name: string;
  readonly version: string;
  readonly purl: string;
  /** Licence names: SPDX ids where known, otherwise the name the package uses. */
  readonly licenses: readonly string[];
  readonly supplier?: string;
  readonly description?: string;
  /** sha256 of the package file (a .deb, a tarball), hex. */
  readonly sha256?: string;
  /** Extra name/value facts (e.g. the Debian source package). */
  readonly properties?: Readonly<Record<string, string>>;
}

/** SbomSubject is what the document describes (an image), with the values that name it. */
export interface SbomSubject {
  readonly name: string;
  readonly version?: string;
  /** Image manifest digest, when known. */
  readonly digest?: string;
}

/** SbomMeta are the document-level values: all deterministic (no wall clock). */
export interface SbomMeta {
  readonly subject: SbomSubject;
  /** SOURCE_DATE_EPOCH in seconds: the document's timestamp. */
  readonly epoch: number;
  readonly tool: { readonly name: string; readonly version: string };
}

/** debPurl is the purl of a Debian binary package: pkg:deb/debian/NAME@VERSION?arch=A&distro=D. */
export function debPurl(
  name: string,
  version: string,
  arch: string,
  distro: string,
  namespace = 'debian',
): string {
  const { PackageURL } = loadPackageUrl();
  return new PackageURL('deb', namespace, name, version, { arch, distro }, undefined).toString();
}

/** sortComponents orders components by purl (the writers' output order). */
export function sortComponents(c: readonly SbomComponent[]): SbomComponent[] {
  return [...c].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
}
