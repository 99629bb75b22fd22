import type { VersionRequest } from './request.ts';

// The requests almost every app makes (no version, a major such as `22` or `22.x`, an exact
// version) answered without semver, whose loading and range parsing are most of the work of a
// rebuild that changes nothing. Anything else (and any version list with keys of another shape)
// is left to resolveVersion, which gives the same answers for these requests.

/** A plain release: what the registry's keys look like (semver also accepts `v`, `=`, `+build`). */
const RELEASE = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
/** A prerelease (or not semver at all): never picked by resolveVersion either. */
const PRERELEASE = /^\d+\.\d+\.\d+-/;
const MAJOR = /^(0|[1-9]\d*)(?:\.[xX*])?$/;

type Triple = readonly [number, number, number];

/**
 * quickResolve resolves a request of a plain form among registry versions: `{ version }` (which
 * may be undefined: nothing matches), or undefined when the request or the versions are not of
 * the forms handled here.
 */
export function quickResolve(
  versions: readonly string[],
  request: VersionRequest,
): { version: string | undefined } | undefined {
  const range = request.range;
  let want: ((v: Triple) => boolean) | undefined;
  if (range === undefined) want = (v) => v[0] % 2 === 0;
  else if (RELEASE.test(range)) want = undefined;
  else {
    const major = MAJOR.exec(range);
    if (!major || !Number.isSafeInteger(Number(major[1]))) return undefined;
    const m = Number(major[1]);
    want = (v) => v[0] === m;
  }
  let best: Triple | undefined;
  let bestKey: string | undefined;
  for (const key of versions) {
    const parts = RELEASE.exec(key);
    if (!parts) {
      if (PRERELEASE.test(key)) continue;
      return undefined;
    }
    const v: Triple = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
    if (!v.every(Number.isSafeInteger)) return undefined;
    if (want === undefined) {
      if (key === range) bestKey = key;
      continue;
    }
    if (want(v) && (!best || newer(v, best))) {
      best = v;
      bestKey = key;
    }
  }
  return { version: bestKey };
}

function newer(a: Triple, b: Triple): boolean {
  return a[0] !== b[0] ? a[0] > b[0] : a[1] !== b[1] ? a[1] > b[1] : a[2] > b[2];
}

/** quickForm is true for the requests quickResolve handles (given plain version keys). */
export function quickForm(request: VersionRequest): boolean {
  const range = request.range;
  return range === undefined || RELEASE.test(range) || MAJOR.test(range);
}

/** quickPinned is the exact version a request names when it is a plain release (`22.1.0`). */
export function quickPinned(request: VersionRequest): string | undefined {
  return request.range !== undefined && RELEASE.test(request.range) ? request.range : undefined;
}
