// Sizes and durations as users write them in flags and the config file: `10GiB`, `500MB`,
// `30d`, `24h` (docker's `--keep-storage 10GB` and `--filter until=24h` spellings are accepted).

const BYTE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

const DURATION_UNITS: Readonly<Record<string, number>> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/**
 * parseByteSize reads `10GiB`, `512MiB`, `10GB` (decimal), `1.5g`, `4096`; undefined when the
 * text is not a size, so callers can name the flag or key in their own error line.
 */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = BYTE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** parseDuration reads `30d`, `24h`, `90m`, `45s`, `2w` or a combination (`1h30m`); undefined otherwise. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (!/^(\d+(?:\.\d+)?[smhdw])+$/.test(t)) return undefined;
  let ms = 0;
  for (const [, n, u] of t.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)) ms += Number(n) * DURATION_UNITS[u!]!;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** formatBytes prints a byte count the way the CLI shows sizes (`1.5 GiB`, `12 MiB`, `900 B`). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1).replace(/\.0$/, '')} ${units[i]}`;
}
