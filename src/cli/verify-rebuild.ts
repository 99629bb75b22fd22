import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DependencyName } from '../attest/dependencies.ts';
import { imageDiff } from '../attest/image-diff.ts';
import { KILN_BUILD_TYPE, type Provenance, type ProvenancePredicate } from '../attest/provenance.ts';
import { treeDigest } from '../attest/source.ts';
import type { Image } from '../oci/image.ts';
import { readProjectDescriptor } from '../platform/project-descriptor.ts';
import type { Transports } from '../transport/transports.ts';
import type { CliContext } from './context.ts';

// `kiln verify --rebuild`: the build again from the provenance's pinned inputs (the source at its
// commit, or the tree given with --path checked against the recorded digest; the builder, run
// image and buildpacks as requested; the env variable names, valued from this environment; the
// flags that change the image) in a clean workspace with an empty cache, into a private OCI
// layout; then the digests compared and, on a mismatch, the first differing layer and its files.

const KILN_BIN = fileURLToPath(new URL('../../bin/kiln', import.meta.url));
const GIT_SCHEMES = /^(https?|ssh|git|file):\/\//;

interface Options {
  readonly compression?: string;
  readonly sourceDateEpoch?: number;
  readonly defaultProcess?: string;
  readonly execEnv?: string;
  readonly skipExtensions?: boolean;
}

function run(file: string, args: string[], env: Record<string, string | undefined>, cwd?: string) {
  return new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(file, args, { env, maxBuffer: 64 << 20, ...(cwd ? { cwd } : {}) }, (err, _out, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr: String(stderr) }),
    );
  });
}

/** checkout clones the provenance's git source at its commit into `dir`; a line on failure. */
async function checkout(
  git: { repository: string; commit: string },
  dir: string,
): Promise<string | undefined> {
  if (!GIT_SCHEMES.test(git.repository))
    return `rebuild: git repository ${git.repository}: only http(s), ssh, git and file URLs are cloned`;
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin', GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1' };
  const c = await run(
    'git',
    ['-c', 'protocol.ext.allow=never', 'clone', '--quiet', '--no-checkout', '--', git.repository, dir],
    env,
  );
  if (c.code !== 0) return `rebuild: cannot clone ${git.repository}: ${c.stderr.trim().split('\n').pop()}`;
  const co = await run(
    'git',
    ['-C', dir, '-c', 'core.hooksPath=/dev/null', 'checkout', '--quiet', git.commit, '--'],
    env,
  );
  if (co.code !== 0) return `rebuild: cannot check out ${git.commit}: ${co.stderr.trim().split('\n').pop()}`;
  return undefined;
}

const pin = (p: ProvenancePredicate | undefined, name: string) =>
  p?.buildDefinition.resolvedDependencies?.find((d) => d.name === name)?.digest?.sha256;

/** buildArgs are the `kiln build` arguments that repeat the recorded build. */
function buildArgs(ext: Record<string, unknown>, app: string, work: string): string[] {
  const o = (ext.options ?? {}) as Options;
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  return [
    'build',
    `oci:${path.join(work, 'out')}:rebuild`,
    '--path',
    app,
    '--builder',
    String(ext.builder),
    ...(typeof ext.runImage === 'string' ? ['--run-image', ext.runImage] : []),
    ...strings(ext.buildpacks).flatMap((b) => ['--buildpack', b]),
    ...strings(ext.env).flatMap((n) => ['--env', n]),
    ...(o.compression ? ['--compression', o.compression] : []),
    ...(o.defaultProcess ? ['--default-process', o.defaultProcess] : []),
    ...(o.execEnv ? ['--exec-env', o.execEnv] : []),
    ...(o.skipExtensions ? ['--skip-extensions'] : []),
    '--cache-dir',
    path.join(work, 'cache'),
    '--no-attest',
    '--provenance-output',
    path.join(work, 'provenance.json'),
  ];
}

/** rebuildCheck rebuilds the image `provenance` describes and says how the result differs. */
export async function rebuildCheck(o: {
  ctx: CliContext;
  images: Transports;
  image: Image;
  provenance: ProvenancePredicate;
  path?: string;
}): Promise<string[]> {
  const p = o.provenance;
  if (p.buildDefinition.buildType !== KILN_BUILD_TYPE)
    return [
      `rebuild: the provenance is of a ${p.buildDefinition.buildType} run, not a kiln build: rebuild the image it names`,
    ];
  const ext = p.buildDefinition.externalParameters;
  const source = ext.source as {
    tree?: { digest?: { sha256?: string } };
    git?: { repository: string; commit: string; path?: string };
  };
  const work = await mkdtemp(path.join(o.ctx.settings.env.TMPDIR ?? tmpdir(), 'kiln-rebuild-'));
  try {
    let app: string;
    if (o.path) app = path.resolve(o.path);
    else if (source.git) {
      const failed = await checkout(source.git, path.join(work, 'src'));
      if (failed) return [failed];
      app = path.join(work, 'src', source.git.path ?? '');
    } else return ['rebuild: the provenance names no git source: give the source tree with --path DIR'];
    const descriptor = await readProjectDescriptor(app, undefined);
    const tree = await treeDigest(app, descriptor.filter);
    if (`sha256:${source.tree?.digest?.sha256}` !== tree)
      return [
        `rebuild: the source at ${app} has tree digest ${tree}, the provenance names sha256:${source.tree?.digest?.sha256}`,
      ];
    const opts = (ext.options ?? {}) as Options;
    const env = {
      ...o.ctx.settings.env,
      ...(opts.sourceDateEpoch !== undefined ? { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) } : {}),
      CI: '1',
      NO_COLOR: '1',
    };
    const globals = o.ctx.settings.insecureRegistries.flatMap((r) => ['--insecure-registry', r]);
    o.ctx.log.info(`Rebuilding from the provenance in ${work}`);
    const b = await run(KILN_BIN, [...globals, ...buildArgs(ext, app, work)], env);
    if (b.code !== 0)
      return [`rebuild: the build failed (exit ${b.code}): ${b.stderr.trim().split('\n').pop()}`];
    const lines: string[] = [];
    const again = (JSON.parse(await readFile(path.join(work, 'provenance.json'), 'utf8')) as Provenance)
      .predicate;
    for (const name of [DependencyName.Builder, DependencyName.RunImage]) {
      const [was, now] = [pin(p, name), pin(again, name)];
      if (was !== now)
        lines.push(`rebuild: the ${name} resolves to sha256:${now}, the provenance pins sha256:${was}`);
    }
    const rebuilt = await o.images.parse(`oci:${path.join(work, 'out')}:rebuild`).read();
    return [...lines, ...(await imageDiff(o.image, rebuilt))];
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
