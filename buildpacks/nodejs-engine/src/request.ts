// What users write about the Node.js version, before any semver work: detect reads this module
// only, so its bundle carries no semver.

/** VersionRequest is a Node.js version constraint and where it came from. */
export interface VersionRequest {
  /** A semver range, or undefined for the default (newest LTS). */
  readonly range: string | undefined;
  /** Human-readable origin, e.g. `package.json engines.node`. */
  readonly source: string;
}

// nvm's LTS codenames (lts/<name>); a newer, unlisted codename falls back to the default LTS.
const LTS_CODENAMES: Readonly<Record<string, number>> = {
  argon: 4,
  boron: 6,
  carbon: 8,
  dubnium: 10,
  erbium: 12,
  fermium: 14,
  gallium: 16,
  hydrogen: 18,
  iron: 20,
  jod: 22,
  krypton: 24,
};

/**
 * normalizeRange turns what users write in engines.node, .nvmrc or .node-version into a semver
 * range: `v20.1.0` → `20.1.0`, `lts/*` → default, `lts/iron` → `20`, `node`/`latest` → `*`.
 */
export function normalizeRange(text: string): string | undefined {
  const value = text.trim().replace(/^v(?=\d)/, '');
  if (value === '' || value === 'lts/*' || value === 'lts') return undefined;
  if (value === 'node' || value === 'latest' || value === 'current' || value === 'stable') return '*';
  const lts = /^lts\/([a-z]+)$/i.exec(value);
  if (lts) {
    const major = LTS_CODENAMES[lts[1]!.toLowerCase()];
    return major === undefined ? undefined : String(major);
  }
  return value;
}
