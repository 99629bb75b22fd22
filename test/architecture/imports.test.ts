// The dependency table of the design (docs: design.md, "Architecture") as data, checked against
// every import in src/: a new edge that breaks it fails here with the file and the line, the way
// go-containerregistry's depcheck guards its packages. Change the table only together with the
// design; to fix a failure, move the shared piece to the folder both sides may import (often
// src/internal/ or src/oci/), not the table.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

// Every folder may also import oci/ (the read-only core) and internal/ (plumbing), except the two
// themselves: internal/ imports no other folder, oci/ only internal/.
const EVERYONE = ['oci', 'internal'];

/**
 * MAY_IMPORT: which folders each folder under src/ may import. The arrows of the design:
 * cli → platform → lifecycle → sandbox / cnb / layers; platform → transport → registry, layout,
 * archive, store, daemon; cli → stack → debian; cli → builder, buildpackage, attest, fleet.
 * Folders the design plans (transport, daemon, attest, fleet) are placed already.
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  internal: [],
  oci: [],
  // Sources and sinks of images.
  registry: [],
  layout: [],
  archive: ['layout', 'layers'],
  // Store names are registry references.
  store: ['layout', 'registry'],
  daemon: ['registry', 'layout', 'layers'],
  transport: ['registry', 'layout', 'archive', 'store', 'daemon', 'layers'],
  // Layers write their blobs into a layout's BlobStore.
  layers: ['layout'],
  // Spec files inside untrusted trees are read through the layers' safe reader.
  cnb: ['layers'],
  // The rootfs cache unpacks image layers.
  sandbox: ['layers'],
  launcher: ['cnb', 'layers', 'layout', 'sbom'],
  // The exporter adds the launcher layer; the layer cache is a BlobStore, the cache image a
  // registry image (until it is read through transport/).
  lifecycle: ['sandbox', 'cnb', 'layers', 'launcher', 'layout', 'registry', 'transport'],
  platform: [
    'lifecycle',
    'transport',
    'sandbox',
    'cnb',
    'layers',
    'launcher',
    'layout',
    'registry',
    'store',
    'archive',
    'sbom',
    'attest',
  ],
  debian: ['layers'],
  // SBOM documents and the referrers that carry them (attest/ is where they are going).
  sbom: ['cnb', 'layers', 'layout', 'registry', 'transport'],
  attest: ['cnb', 'layers', 'layout', 'registry', 'transport', 'sbom'],
  stack: ['debian', 'sandbox', 'cnb', 'layers', 'layout', 'registry', 'store', 'transport', 'sbom', 'attest'],
  builder: ['cnb', 'layers', 'layout', 'archive', 'store', 'registry', 'transport'],
  buildpackage: ['builder', 'cnb', 'layers', 'layout', 'archive', 'store', 'registry', 'transport'],
  inspect: ['builder', 'cnb', 'layers', 'layout', 'registry', 'store', 'transport', 'sbom', 'attest'],
  rebase: ['cnb', 'layers', 'layout', 'registry', 'store', 'transport'],
  // The config file's limits use the sandbox's size and duration syntax.
  config: ['cnb', 'sandbox'],
  // The fleet rebases through rebase/ and reads durations with config/'s syntax; builds go through
  // the CLI's own `kiln build` (passed in), never lifecycle/ directly.
  fleet: [
    'rebase',
    'config',
    'platform',
    'lifecycle',
    'transport',
    'registry',
    'store',
    'stack',
    'builder',
    'attest',
    'sbom',
    'cnb',
  ],
  cli: ['*'],
};

/**
 * componentOf names the folder a file under src/ belongs to. `lifecycle/platform/` is the pack side
 * of a build (workspace, builder facts, reports) that still lives under lifecycle/: it counts as
 * platform, so the creator's own imports are held to the lifecycle's row.
 */
function componentOf(rel: string): string {
  const parts = rel.split('/');
  if (parts[0] === 'lifecycle' && parts[1] === 'platform') return 'platform';
  return parts.length === 1 ? '(top)' : parts[0]!;
}

function allowed(from: string, to: string): boolean {
  if (from === to) return true;
  if (from === 'internal') return false;
  if (from === 'oci') return to === 'internal';
  if (EVERYONE.includes(to)) return true;
  const row = MAY_IMPORT[from];
  return row !== undefined && (row.includes('*') || row.includes(to));
}

/** The relative specifiers a module imports: static, `export … from`, side-effect and dynamic imports. */
export function importsOf(text: string): { spec: string; line: number }[] {
  const out: { spec: string; line: number }[] = [];
  const patterns = [
    // `import … from '…'` and `export … from '…'` at the start of a line (not in comments).
    /^[ \t]*(?:import|export)\b[^;'"`]*?\bfrom\s*(['"])([^'"]+)\1/gm,
    // `import '…'` (side effects only).
    /^[ \t]*import\s*(['"])([^'"]+)\1/gm,
    // `import('…')` anywhere.
    /\bimport\(\s*(['"])([^'"]+)\1\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of text.matchAll(re)) {
      const spec = m[2]!;
      if (!spec.startsWith('.')) continue;
      out.push({ spec, line: text.slice(0, m.index).split('\n').length });
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** Every import edge between two folders that the table does not allow, as `from → to  file:line  spec`. */
function offendingEdges(): string[] {
  const bad: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = path.relative(SRC, file);
    const from = componentOf(rel);
    for (const { spec, line } of importsOf(readFileSync(file, 'utf8'))) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), spec));
      if (target.startsWith('..')) {
        bad.push(`${from} → outside src/  src/${rel}:${line}  ${spec}`);
        continue;
      }
      const to = componentOf(target);
      if (!allowed(from, to)) bad.push(`${from} → ${to}  src/${rel}:${line}  ${spec}`);
    }
  }
  return bad.sort();
}

describe('import boundaries (design.md dependency table)', () => {
  test('every import between folders of src/ follows the table', () => {
    const bad = offendingEdges();
    assert.deepEqual(bad, [], `imports that break the design's dependency table:\n  ${bad.join('\n  ')}`);
  });

  test('every folder of src/ has a row in the table', () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    const unplaced = folders.filter((f) => !(f in MAY_IMPORT));
    assert.deepEqual(unplaced, [], `folders the table does not place: ${unplaced.join(', ')}`);
  });

  test('internal/ imports no other folder of src/, not even oci/', () => {
    const bad = sourceFiles(path.join(SRC, 'internal')).flatMap((file) =>
      importsOf(readFileSync(file, 'utf8'))
        .filter(({ spec }) => !path.resolve(path.dirname(file), spec).startsWith(path.join(SRC, 'internal')))
        .map(({ spec, line }) => `${path.relative(SRC, file)}:${line} ${spec}`),
    );
    assert.deepEqual(bad, []);
  });

  test('the checker sees every kind of import, and the table refuses what the design forbids', () => {
    const text = [
      "import { a } from '../registry/a.ts';",
      'import {',
      '  b,',
      "} from '../cnb/b.ts';",
      "export { c } from '../stack/c.ts';",
      "export * from './d.ts';",
      "import '../debian/e.ts';",
      "const f = await import('../lifecycle/f.ts');",
      "// import { g } from '../nope/g.ts' in a comment: only at the start of a line",
      " * import { h } from '../nope/h.ts';",
      "import { i } from 'node:fs';",
    ].join('\n');
    assert.deepEqual(
      importsOf(text).map((i) => `${i.line}:${i.spec}`),
      [
        '1:../registry/a.ts',
        '2:../cnb/b.ts',
        '5:../stack/c.ts',
        '6:./d.ts',
        '7:../debian/e.ts',
        '8:../lifecycle/f.ts',
      ],
    );
    // The edges the design rules out, among them ones that once existed.
    for (const [from, to] of [
      ['registry', 'cnb'],
      ['lifecycle', 'stack'],
      ['lifecycle', 'platform'],
      ['sbom', 'debian'],
      ['sandbox', 'lifecycle'],
      ['debian', 'registry'],
      ['layout', 'layers'],
      ['internal', 'oci'],
      ['oci', 'registry'],
      ['transport', 'platform'],
      ['lifecycle', 'cli'],
    ] as const)
      assert.equal(allowed(from, to), false, `${from} → ${to}`);
    assert.equal(componentOf('lifecycle/platform/orchestration.ts'), 'platform');
    assert.equal(allowed('platform', 'lifecycle'), true);
    assert.equal(allowed('cli', 'platform'), true);
    assert.equal(allowed('transport', 'store'), true);
  });
});
