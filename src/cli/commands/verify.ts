import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { COSIGN_SIG_ARTIFACT_TYPE } from '../../attest/cosign-signature.ts';
import { readPublicKey } from '../../attest/keys.ts';
import { type Policy, parsePolicy } from '../../attest/policy.ts';
import { KILN_BUILD_TYPE, type ProvenancePredicate, SLSA_PROVENANCE_V1 } from '../../attest/provenance.ts';
import { keyCheck, type SignatureCheck } from '../../attest/signer.ts';
import { VerificationFailed, verifyImage } from '../../attest/verify.ts';
import { UsageError } from '../../internal/errors.ts';
import type { Digest } from '../../oci/digest.ts';
import type { CliContext } from '../context.ts';
import { imageTransports } from '../image-ref.ts';
import { terminalSafe } from '../terminal-text.ts';
import { platformOption } from './image.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${what} ${file}: ${(e as Error).message}`);
  }
}

/** keysOf reads the --key files and the policy's keys (relative to the policy file). */
async function keysOf(
  keyFiles: readonly string[],
  policy: Policy | undefined,
  policyFile: string | undefined,
) {
  const files = [
    ...keyFiles.map((f) => ({ file: f, what: '--key' })),
    ...(policy?.keys ?? []).map((f) => ({
      file: path.resolve(path.dirname(policyFile ?? '.'), f),
      what: 'policy key',
    })),
  ];
  const out: SignatureCheck[] = [];
  for (const k of files) out.push(keyCheck(readPublicKey(await readText(k.file, k.what), k.file)));
  return out;
}

/** register adds `kiln verify`. */
export function register(program: Command, ctx: CliContext): void {
  program
    .command('verify')
    .description(
      "check an image's signature, its attestations' signatures and subjects, and a policy; one line per violation, exit 0 only when all hold",
    )
    .argument('<image>', 'image (registry reference, oci:DIR[:TAG], local store name)')
    .option(
      '--key <file>',
      'public key (PEM) a signature must verify with; repeatable: one of them',
      collect,
      [],
    )
    .option(
      '--policy <file>',
      'policy (TOML): required provenance, allowed builders, run images, sources, SBOM, keys',
    )
    .option('--platform <os/arch[/variant]>', 'platform to pick from a multi-platform index')
    .option(
      '--rebuild',
      'build the image again from its verified provenance (clean workspace, empty cache) and compare digests; a mismatch names the first differing layer and its files',
    )
    .option(
      '--path <dir>',
      'with --rebuild: the source tree (checked against the provenance), instead of cloning its git source',
    )
    .action(
      async (
        arg: string,
        opts: { key: string[]; policy?: string; platform?: string; rebuild?: boolean; path?: string },
      ) => {
        const policy = opts.policy
          ? parsePolicy(await readText(opts.policy, '--policy'), opts.policy)
          : undefined;
        const keys = await keysOf(opts.key, policy, opts.policy);
        if (keys.length === 0)
          throw new UsageError('kiln verify needs a key: --key FILE, or keys in the policy');
        const images = imageTransports(ctx.settings, ctx.log, platformOption(opts.platform));
        const target = await images.locate(arg);
        const image = await target.read();
        const digest = (await image.digest()) as Digest;
        const evidence = await target.referrers.list(digest);
        // Signatures cosign itself made have no subject: in a registry they are only under the tag.
        if (
          target.registry !== undefined &&
          !evidence.some((r) => r.descriptor.artifactType === COSIGN_SIG_ARTIFACT_TYPE)
        ) {
          const { cosignTagSignature } = await import('../supply-chain.ts');
          const sig = await cosignTagSignature(target, digest, images, (m) => ctx.log.debug(m));
          if (sig) evidence.push(sig);
        }
        const verdict = await verifyImage({ digest, evidence, keys, ...(policy ? { policy } : {}) });
        const violations = [...verdict.violations];
        if (opts.rebuild && violations.length === 0) {
          const prov = verdict.statements.find(
            (s) =>
              s.predicateType === SLSA_PROVENANCE_V1 &&
              (s.predicate as ProvenancePredicate)?.buildDefinition?.buildType === KILN_BUILD_TYPE,
          );
          if (!prov) violations.push('rebuild: no signed build provenance of the image to rebuild from');
          else {
            const { rebuildCheck } = await import('../verify-rebuild.ts');
            violations.push(
              ...(await rebuildCheck({
                ctx,
                images,
                image,
                provenance: prov.predicate as ProvenancePredicate,
                ...(opts.path ? { path: opts.path } : {}),
              })),
            );
          }
        }
        // One line each, whatever a registry put into the strings a line quotes.
        for (const v of violations) ctx.stdout.write(`${terminalSafe(v.replace(/[\r\n]+/g, ' '))}\n`);
        if (violations.length > 0)
          throw new VerificationFailed(
            `${target.name}@${digest}: ${verdict.violations.length} verification failure(s)`,
          );
        const types = [...new Set(verdict.statements.map((s) => s.predicateType))];
        ctx.stdout.write(
          `Verified ${target.name}@${digest}: signed by ${verdict.signedBy.map((k) => k.slice(0, 12)).join(', ')}; attestations: ${types.join(', ') || 'none'}${opts.rebuild ? '; rebuilt to the same digest' : ''}\n`,
        );
      },
    );
}
