import { BuildpackFailure } from '../main.ts';

/**
 * The Debian archive a build may install packages from, as the platform passes it (the way it
 * passes `npm_config_registry`): the stack's suites, each with its mirror, the components, the
 * architecture and the keyring InRelease must be signed with. kiln sets these from the stack's
 * configuration; another platform can set them with `--env`.
 *
 *   KILN_DEBIAN_SUITES      "bookworm=http://m/debian bookworm-updates=http://m/debian
 *                            bookworm-security=http://m/debian-security" (priority order: later
 *                            suites' newer versions win)
 *   KILN_DEBIAN_COMPONENTS  "main" (space-separated)
 *   KILN_DEBIAN_ARCH        "amd64"
 *   KILN_DEBIAN_KEYRING     the archive keyring file (binary or armored OpenPGP) inside the build
 */
export interface DebianSource {
  readonly suites: readonly { readonly suite: string; readonly mirror: string }[];
  readonly components: readonly string[];
  readonly arch: string;
  readonly keyring: string;
}

const SUITE_RE = /^[a-z0-9][a-z0-9.+-]*$/;

/** debianSource reads the platform's Debian archive settings; a missing one fails naming the variable. */
export function debianSource(env: NodeJS.ProcessEnv): DebianSource {
  const raw = env.KILN_DEBIAN_SUITES?.trim();
  const keyring = env.KILN_DEBIAN_KEYRING?.trim();
  if (!raw || !keyring)
    throw new BuildpackFailure(
      "no Debian archive configured for this build (the platform sets KILN_DEBIAN_SUITES and KILN_DEBIAN_KEYRING; kiln passes its stack's mirror, suites and keyring)",
    );
  const suites = raw.split(/\s+/).map((item) => {
    const eq = item.indexOf('=');
    const suite = item.slice(0, eq);
    const mirror = item.slice(eq + 1);
    let url: URL | undefined;
    try {
      url = new URL(mirror);
    } catch {
      url = undefined;
    }
    if (eq <= 0 || !SUITE_RE.test(suite) || !url || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      throw new BuildpackFailure(`KILN_DEBIAN_SUITES: "${item}" is not suite=http(s)://mirror`);
    return { suite, mirror };
  });
  const components = (env.KILN_DEBIAN_COMPONENTS?.trim() || 'main').split(/\s+/);
  for (const c of components)
    if (!SUITE_RE.test(c))
      throw new BuildpackFailure(`KILN_DEBIAN_COMPONENTS: "${c}" is not a component name`);
  const arch = env.KILN_DEBIAN_ARCH?.trim() || 'amd64';
  if (!SUITE_RE.test(arch)) throw new BuildpackFailure(`KILN_DEBIAN_ARCH: "${arch}" is not an architecture`);
  return { suites, components, arch, keyring };
}
