import { parseDeb822 } from './deb822.ts';

/**
 * licensesFromCopyright reads the licence short names of a machine-readable debian/copyright
 * file (DEP-5): the first line of every `License:` field, split at `or`/`and`/`,` and with
 * "with ... exception" parts dropped. Returns [] for files that are not machine-readable.
 * Names are deduplicated and sorted, so the result does not depend on paragraph order.
 */
export function licensesFromCopyright(text: string): string[] {
  const first = text.split('\n', 1)[0] ?? '';
  if (!/^Format:\s*\S*copyright-format/i.test(first)) return [];
  let paragraphs: ReadonlyArray<ReadonlyMap<string, string>>;
  try {
    paragraphs = parseDeb822(text);
  } catch {
    // A package's copyright file that claims the machine-readable format but does not parse names
    // no licenses, like a free-form one: the SBOM lists the package without them.
    return [];
  }
  const names = new Set<string>();
  for (const p of paragraphs) {
    const lic = p.get('license');
    if (!lic) continue;
    const short = lic.split('\n', 1)[0]!.trim();
    if (!short) continue;
    for (const part of short.split(/\s+or\s+|\s+and\s+|\s*,\s*|\s*\|\s*/i)) {
      const n = part.replace(/\s+with\s+.*$/i, '').trim();
      if (n && /^[A-Za-z0-9][A-Za-z0-9.+_-]*$/.test(n)) names.add(n);
    }
  }
  return [...names].sort();
}
