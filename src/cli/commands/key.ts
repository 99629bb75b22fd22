import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { generateKeyPair, readPublicKey } from '../../attest/keys.ts';
import { keyIdOf } from '../../attest/signer.ts';
import { UsageError } from '../../internal/errors.ts';
import type { CliContext } from '../context.ts';
import { passphraseOf } from '../supply-chain.ts';

/** register adds `kiln key generate`. */
export function register(program: Command, ctx: CliContext): void {
  const key = program
    .command('key')
    .description('signing keys for kiln sign, kiln build --sign-key, kiln verify');
  key
    .command('generate')
    .description(
      'make an ECDSA P-256 key pair: PREFIX.key (encrypted PKCS#8, passphrase from KILN_PASSWORD or COSIGN_PASSWORD, else asked) and PREFIX.pub (what kiln verify --key and cosign verify --key take)',
    )
    .option('--output-key-prefix <prefix>', 'file name prefix', 'kiln')
    .action(async (opts: { outputKeyPrefix: string }) => {
      const prefix = path.resolve(opts.outputKeyPrefix);
      const pass = await passphraseOf(ctx, `${prefix}.key`)();
      const pair = generateKeyPair(pass);
      // 'wx': an existing key is never overwritten (it may be the only copy).
      const write = async (file: string, text: string, mode: number) => {
        let fh: Awaited<ReturnType<typeof open>>;
        try {
          fh = await open(file, 'wx', mode);
        } catch (e) {
          throw new UsageError(
            `${file}: ${(e as NodeJS.ErrnoException).code === 'EEXIST' ? 'exists already (not overwritten)' : (e as Error).message}`,
          );
        }
        try {
          await fh.writeFile(text);
          await fh.sync();
        } finally {
          await fh.close();
        }
      };
      await write(`${prefix}.key`, pair.privateKeyPem, 0o600);
      await write(`${prefix}.pub`, pair.publicKeyPem, 0o644);
      const id = keyIdOf(readPublicKey(pair.publicKeyPem, `${prefix}.pub`));
      ctx.log.info(`Private key written to ${prefix}.key, public key to ${prefix}.pub (key id ${id})`);
      ctx.stdout.write(`${prefix}.pub\n`);
    });
}
