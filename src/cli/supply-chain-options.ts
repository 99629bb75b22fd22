import type { Command } from 'commander';

// The supply-chain flags of `kiln build` and `kiln rebase`, apart from the signing and attaching
// code: every build registers them, and only builds that ask load that code.

export interface SupplyChainFlags {
  provenanceOutput?: string;
  signKey?: string;
  /** true: --attest, false: --no-attest, undefined: attach when publishing. */
  attest?: boolean;
}

/** addSupplyChainOptions adds --provenance-output, --sign-key and --attest/--no-attest. */
export function addSupplyChainOptions(cmd: Command): void {
  cmd
    .option(
      '--provenance-output <file>',
      'write the SLSA v1 provenance (an in-toto statement) of the image here',
    )
    .option(
      '--sign-key <file>',
      'sign the image (cosign-compatible) and its attestations with this ECDSA P-256 private key (passphrase: KILN_PASSWORD or COSIGN_PASSWORD, else asked)',
    )
    .option('--attest', 'attach SBOM and provenance as OCI referrers (default when publishing)')
    .option('--no-attest', 'attach nothing, even when publishing');
}

/** attestationWanted says whether the build or rebase has supply-chain work to do at all. */
export function attestationWanted(flags: SupplyChainFlags, publish: boolean, signing: boolean): boolean {
  return (
    flags.provenanceOutput !== undefined ||
    flags.attest === true ||
    signing ||
    (publish && flags.attest !== false)
  );
}
