import { stringify as tomlStringify } from 'smol-toml';
import type { ImageReport } from './inspect.ts';

/** Output formats of `kiln inspect`. */
export const OUTPUT_FORMATS = ['human', 'json', 'toml', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** formatReport renders a report; every format ends with a newline and is stable (golden-tested). */
export function formatReport(r: ImageReport, format: OutputFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(r, null, 2)}\n`;
    case 'toml':
      return tomlStringify(plain(r) as Record<string, unknown>);
    case 'yaml':
      return `${yaml(plain(r), 0).join('\n')}\n`;
    case 'human':
      return human(r);
  }
}

/** The index an IndexReport is of. */
export interface IndexSummary {
  readonly reference: string;
  readonly digest: string;
  readonly mediaType: string;
}

/**
 * formatIndexReport renders `kiln inspect` of an image index: the index, then each platform's
 * report (`images`, in the index's order) in the same format as a single image's.
 */
export function formatIndexReport(
  index: IndexSummary,
  reports: readonly ImageReport[],
  format: OutputFormat,
): string {
  const doc = { index: { ...index, platforms: reports.map((r) => r.image.platform) }, images: reports };
  switch (format) {
    case 'json':
      return `${JSON.stringify(doc, null, 2)}\n`;
    case 'toml':
      return tomlStringify(plain(doc) as Record<string, unknown>);
    case 'yaml':
      return `${yaml(plain(doc), 0).join('\n')}\n`;
    case 'human': {
      const head = [
        `Index: ${index.reference}`,
        `Digest: ${index.digest}`,
        `Platforms: ${reports.map((r) => r.image.platform).join(', ') || '(none)'}`,
      ];
      const parts = reports.map((r) => `\n=== ${r.image.platform} ===\n${human(r)}`);
      return `${head.join('\n')}\n${parts.join('')}`;
    }
  }
}

// JSON-safe copy without undefined (TOML has no null/undefined; YAML keeps output small).
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = plain(x);
    return out;
  }
  return v;
}

// A small YAML emitter for JSON data: strings are always double-quoted (JSON string syntax is
// valid YAML), so no value can be misread as a number, boolean, null or document marker.
function yaml(v: unknown, indent: number): string[] {
  const pad = ' '.repeat(indent);
  if (Array.isArray(v)) {
    if (v.length === 0) return [`${pad}[]`];
    const out: string[] = [];
    for (const item of v) {
      if (isScalar(item)) out.push(`${pad}- ${scalar(item)}`);
      else {
        const lines = yaml(item, indent + 2);
        if (lines.length === 1 && /^\s*(\[\]|\{\})$/.test(lines[0]!)) out.push(`${pad}- ${lines[0]!.trim()}`);
        else out.push(`${pad}- ${lines[0]!.slice(indent + 2)}`, ...lines.slice(1));
      }
    }
    return out;
  }
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) return [`${pad}{}`];
    const out: string[] = [];
    for (const [k, x] of entries) {
      const key = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(k) ? k : JSON.stringify(k);
      if (isScalar(x)) out.push(`${pad}${key}: ${scalar(x)}`);
      else {
        const lines = yaml(x, indent + 2);
        if (lines.length === 1 && /^\s*(\[\]|\{\})$/.test(lines[0]!))
          out.push(`${pad}${key}: ${lines[0]!.trim()}`);
        else out.push(`${pad}${key}:`, ...lines);
      }
    }
    return out;
  }
  return [`${pad}${scalar(v)}`];
}

function isScalar(v: unknown): boolean {
  return v === null || typeof v !== 'object';
}

function scalar(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'null';
  return String(v);
}

function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd(),
  );
}

function human(r: ImageReport): string {
  const out: string[] = [];
  out.push(`Image: ${r.image.reference}`, `Digest: ${r.image.digest}`, `Platform: ${r.image.platform}`);
  if (r.image.created) out.push(`Created: ${r.image.created}`);
  out.push('', 'Base Image:');
  out.push(
    `  Reference: ${r.base.reference || '(unknown)'}`,
    `  Top Layer: ${r.base.topLayer || '(unknown)'}`,
  );
  if (r.base.id) out.push(`  ID: ${r.base.id}`);
  if (r.base.distro) out.push(`  Distro: ${r.base.distro}`);
  if (r.base.flavour) out.push(`  Flavour: ${r.base.flavour}`);
  out.push('', 'Run Images:');
  if (r.runImages.length === 0) out.push('  (none recorded)');
  for (const ri of r.runImages) out.push(`  ${ri.image}${ri.mirror ? ' (mirror)' : ''}`);
  out.push('', `Rebasable: ${r.rebasable === undefined ? '(not set)' : String(r.rebasable)}`);
  out.push('', 'Users:');
  out.push(`  Build: ${r.users.build ?? '(unknown)'}`);
  out.push(
    `  Run: ${r.users.run || '(root)'}${r.users.sameUid ? ' (the build uid: the app can rewrite its layers)' : ''}`,
  );
  out.push('', 'Buildpacks:');
  if (r.buildpacks.length === 0) out.push('  (none)');
  else
    out.push(
      ...table([
        ['ID', 'VERSION', 'HOMEPAGE'],
        ...r.buildpacks.map((b) => [b.id, b.version, b.homepage ?? '-']),
      ]),
    );
  out.push('', 'Processes:');
  if (r.processes.length === 0) out.push('  (none)');
  else
    out.push(
      ...table([
        ['TYPE', 'COMMAND', 'ARGS', 'WORK DIR'],
        ...r.processes.map((p) => [
          `${p.type}${p.default ? ' (default)' : ''}`,
          p.command.map(quote).join(' '),
          p.args.length ? p.args.map(quote).join(' ') : '-',
          p.workingDir ?? '-',
        ]),
      ]),
    );
  if (r.project) {
    out.push('', 'Project Source:');
    out.push(`  ${JSON.stringify(r.project)}`);
  }
  out.push('', 'SBOM:');
  if (!r.sbom) out.push('  (no SBOM layer)');
  else {
    const eco = Object.entries(r.sbom.ecosystems);
    if (eco.length === 0) out.push('  (no components)');
    for (const [k, n] of eco) out.push(`  ${k}: ${n}`);
    out.push(`  files: ${r.sbom.files.length}`);
    // --bom: every file with its packages.
    for (const f of r.sbom.files) {
      if (!f.packages) continue;
      out.push(`  ${f.path} (${f.format}):`);
      for (const p of f.packages) out.push(`    ${p || '(no purl)'}`);
    }
  }
  if (r.referrers) {
    out.push('', 'Attached (OCI referrers):');
    if (r.referrers.length === 0) out.push('  (none)');
    for (const a of r.referrers)
      out.push(`  ${a.artifactType}${a.predicateType ? ` (${a.predicateType})` : ''}  ${a.digest}`);
  }
  out.push('', 'Labels:');
  const labels = Object.entries(r.labels);
  if (labels.length === 0) out.push('  (none)');
  for (const [k, v] of labels) out.push(`  ${k}=${v}`);
  return `${out.join('\n')}\n`;
}

function quote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : JSON.stringify(s);
}
