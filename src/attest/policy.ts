import { parse } from 'smol-toml';
import { z } from 'zod';
import { UsageError } from '../internal/errors.ts';

// The verification policy (TOML), e.g.
//   [provenance]
//   required = true                       # signed SLSA provenance from kiln
//   builders = ["localhost:5000/builders/*", "sha256:4f1c..."]
//   run-images = ["registry.example/run@sha256:*"]
//   source-repositories = ["https://github.com/acme/*"]
//   [sbom]
//   required = true                       # a signed CycloneDX or SPDX attestation
//   [signature]
//   keys = ["keys/release.pub", "keys/ci.pub"]   # one of them must have signed
// Patterns: `*` matches any run of characters; a pattern matches a dependency's name, its
// digest, or `name@digest`.

const patterns = z.array(z.string().min(1)).max(256).optional();
const PolicySchema = z.strictObject({
  provenance: z
    .strictObject({
      required: z.boolean().optional(),
      builders: patterns,
      'run-images': patterns,
      'source-repositories': patterns,
    })
    .optional(),
  sbom: z.strictObject({ required: z.boolean().optional() }).optional(),
  signature: z.strictObject({ keys: z.array(z.string().min(1)).max(64).optional() }).optional(),
});

export interface Policy {
  readonly requireProvenance: boolean;
  readonly builders?: readonly string[];
  readonly runImages?: readonly string[];
  readonly sourceRepositories?: readonly string[];
  readonly requireSbom: boolean;
  /** Public key files (relative to the policy file's directory as written). */
  readonly keys: readonly string[];
}

/** parsePolicy reads a policy file's text; `what` names it in errors. */
export function parsePolicy(text: string, what: string): Policy {
  let v: unknown;
  try {
    v = parse(text);
  } catch (e) {
    throw new UsageError(`${what}: not TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = PolicySchema.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new UsageError(`${what}: ${i.path.join('.') || '(document)'}: ${i.message}`);
  }
  const p = r.data;
  const lists = p.provenance;
  return {
    requireProvenance:
      p.provenance?.required ??
      Boolean(lists?.builders || lists?.['run-images'] || lists?.['source-repositories']),
    ...(lists?.builders ? { builders: lists.builders } : {}),
    ...(lists?.['run-images'] ? { runImages: lists['run-images'] } : {}),
    ...(lists?.['source-repositories'] ? { sourceRepositories: lists['source-repositories'] } : {}),
    requireSbom: p.sbom?.required ?? false,
    keys: p.signature?.keys ?? [],
  };
}

function globRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/** matchesAny tells whether one of `candidates` (name, digest, name@digest) matches a pattern. */
export function matchesAny(patterns: readonly string[], candidates: readonly string[]): boolean {
  const res = patterns.map(globRegExp);
  return candidates.some((c) => res.some((re) => re.test(c)));
}
