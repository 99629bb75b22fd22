/** GoVersion is a Go release as go.mod and the download site name it: 1.22, 1.22.3, 1.23rc1. */
export interface GoVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** Pre-release tag (rc1, beta2): sorts before the release. */
  readonly pre: string;
}

/** parseGoVersion reads `1.22`, `1.22.3`, `go1.22.3`, `1.23rc1`; undefined for anything else. */
export function parseGoVersion(text: string): GoVersion | undefined {
  const m = /^(?:go)?1\.(\d+)(?:\.(\d+))?((?:rc|beta)\d+)?$/.exec(text.trim());
  if (!m) return undefined;
  return { major: 1, minor: Number(m[1]), patch: Number(m[2] ?? 0), pre: m[3] ?? '' };
}

/** compareGo orders Go versions (pre-releases before the release). */
export function compareGo(a: GoVersion, b: GoVersion): number {
  if (a.minor !== b.minor) return a.minor - b.minor;
  if (a.patch !== b.patch) return a.patch - b.patch;
  if (a.pre === b.pre) return 0;
  if (a.pre === '') return 1;
  if (b.pre === '') return -1;
  return a.pre < b.pre ? -1 : 1;
}

export function formatGo(v: GoVersion): string {
  return `1.${v.minor}.${v.patch}${v.pre}`;
}

/** GoModRequest is what go.mod asks of the toolchain: its `go` line and `toolchain` line. */
export interface GoModRequest {
  readonly module?: string;
  readonly go?: GoVersion;
  readonly toolchain?: GoVersion;
}

/**
 * goModRequest picks the module path and the `go` / `toolchain` lines out of go.mod. Everything
 * else (and the file's validity) is left to the toolchain, whose own error the user then sees.
 */
export function goModRequest(text: string): GoModRequest {
  const strip = (l: string) => l.replace(/\/\/.*$/, '').trim();
  let module: string | undefined;
  let go: GoVersion | undefined;
  let toolchain: GoVersion | undefined;
  for (const raw of text.split('\n')) {
    const line = strip(raw);
    const m = /^(module|go|toolchain)\s+("?)([^\s"]+)\2$/.exec(line);
    if (!m) continue;
    if (m[1] === 'module') module = m[3];
    else if (m[1] === 'go') go = parseGoVersion(m[3]!);
    else if (m[3] !== 'default') toolchain = parseGoVersion(m[3]!);
  }
  return { ...(module && { module }), ...(go && { go }), ...(toolchain && { toolchain }) };
}
