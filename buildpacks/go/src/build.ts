import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { keepPatterns, removeSource } from '../../_shared/app-source.ts';
import { buildContext } from '../../_shared/context.ts';
import { run } from '../../_shared/exec.ts';
import { writeLaunchToml } from '../../_shared/launch.ts';
import { resetLayer, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log, main } from '../../_shared/main.ts';
import { type Component, writeSboms } from '../../_shared/sbom.ts';
import { afterBuild, beforeBuild } from './build-cache.ts';
import { goModInfo } from './buildinfo.ts';
import { compareGo, formatGo, goModRequest } from './gomod.ts';
import { debianToolchain, downloadedToolchain, TOOL, type Toolchain } from './toolchain.ts';

function fail(step: string, detail = 'see the output above'): BuildpackFailure {
  return new BuildpackFailure(`kiln/go failed at step "${step}": ${detail}`);
}

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  const goModText = await readFile(join(ctx.appDir, 'go.mod'), 'utf8').catch(() => undefined);
  const request = goModRequest(goModText ?? '');
  const tc = await toolchain(ctx.layersDir, ctx.env, request);
  log(`  Go ${formatGo(tc.version)} (${tc.source})`);
  const env = goEnv(ctx.env, ctx.layersDir, tc);
  for (const [layer, types] of [
    ['go-cache', { cache: true }],
    ['go-cache-recent', { cache: true }],
    ['go-mod', { cache: true }],
  ] as const) {
    await mkdir(join(ctx.layersDir, layer), { recursive: true });
    await writeLayerToml(ctx.layersDir, layer, types, {});
  }
  const recentDir = join(ctx.layersDir, 'go-cache-recent');
  const split = beforeBuild(env.GOCACHE!, recentDir);
  const binDir = join(await resetLayer(ctx.layersDir, 'app'), 'bin');
  await mkdir(binDir, { recursive: true });
  const args = ['build', '-trimpath', '-buildvcs=false', '-ldflags=-s -w', '-o', `${binDir}/`];
  const chosen = chosenTargets(ctx.env, request.module);
  const files = goModText === undefined ? await mainFiles(ctx.appDir) : [];
  // One go command: `-o dir/` writes a binary per main package (./... finds them all).
  const pkgs = files.length ? files : (chosen?.map((t) => t.pkg) ?? ['./...']);
  log(`  go ${args.slice(0, 4).join(' ')} ${pkgs.join(' ')}`);
  const res = await run('go', [...args, ...pkgs], { cwd: ctx.appDir, env });
  const kept = afterBuild(env.GOCACHE!, recentDir, split);
  if (kept.merged && !split.fresh) log(`  build cache: ${kept.merged} entries merged into go-cache`);
  if (res.code !== 0) {
    // go's own parser judges go.mod; its message (above) is what the user needs.
    if (/errors parsing go\.mod|go\.mod:\d+:/.test(res.tail))
      throw fail('read go.mod', "go.mod does not parse (go's error above)");
    throw fail('go build');
  }
  if (files.length) spawnSync('mv', [join(binDir, files[0]!.replace(/\.go$/, '')), join(binDir, 'app')]);
  const targets = chosen ?? (await builtTargets(binDir, request.module));
  if (targets.length === 0) throw fail('targets', 'no main package in this module (set BP_GO_TARGETS)');
  await writeSboms(join(ctx.layersDir, 'app'), await modules(binDir, env), TOOL, ctx.env);
  await writeLayerToml(ctx.layersDir, 'app', { launch: true }, { targets: targets.map((t) => t.pkg) });
  await writeLaunchToml(
    ctx.layersDir,
    targets.map((t, i) => ({ type: t.name, command: [join(binDir, t.name)], default: i === 0 })),
  );
  for (const t of targets) log(`  process ${t.name}: ${join(binDir, t.name)}`);
  const removed = await removeSource(ctx.appDir, await keepPatterns(ctx.appDir, ctx.env));
  log(`  removed the source from the image (${removed} entries; keep files with BP_KEEP_FILES)`);
  return 0;
});

/** toolchain: Debian's Go, or a downloaded one when go.mod asks for more than Debian has. */
async function toolchain(
  layersDir: string,
  env: NodeJS.ProcessEnv,
  request: ReturnType<typeof goModRequest>,
): Promise<Toolchain> {
  const wanted = request.toolchain ?? request.go;
  const site = env.BP_GO_DOWNLOAD_URL?.trim();
  const debian = await debianToolchain(layersDir, env, wanted, !!site);
  if ('goroot' in debian) {
    if (!wanted || compareGo(wanted, debian.version) <= 0) return debian;
    const what = request.toolchain ? `toolchain go${formatGo(wanted)}` : `go ${formatGo(wanted)}`;
    throw fail(
      'toolchain',
      `go.mod asks for ${what}, newer than Debian's Go ${formatGo(debian.version)}, and no Go download site is configured (set BP_GO_DOWNLOAD_URL, e.g. to a mirror of the official download page)`,
    );
  }
  log(`  go.mod asks for Go ${formatGo(wanted!)}; Debian has ${formatGo(debian.tooOld)}`);
  return downloadedToolchain(layersDir, env, site!, wanted!, request.toolchain !== undefined);
}

function goEnv(base: NodeJS.ProcessEnv, layersDir: string, tc: Toolchain): NodeJS.ProcessEnv {
  return {
    ...base,
    GOROOT: tc.goroot,
    PATH: `${tc.goroot}/bin:${base.PATH ?? '/usr/bin:/bin'}`,
    GOCACHE: join(layersDir, 'go-cache'),
    GOPATH: join(layersDir, 'go-mod'),
    GOMODCACHE: join(layersDir, 'go-mod', 'mod'),
    CGO_ENABLED: base.CGO_ENABLED ?? '0',
    // The toolchain was chosen here; go must not fetch another one by itself.
    GOTOOLCHAIN: 'local',
    GOENV: 'off',
    HOME: base.HOME ?? '/tmp',
  };
}

interface Target {
  readonly pkg: string;
  readonly name: string;
}

function binaryName(importPath: string, module: string | undefined): string {
  const parts = importPath
    .replace(/^\.\/?/, '')
    .split('/')
    .filter(Boolean);
  if (parts.length > 1 && /^v\d+$/.test(parts.at(-1)!)) parts.pop();
  const name = parts.at(-1) ?? posix.basename(module ?? 'app');
  return /^[A-Za-z0-9_.-]+$/.test(name) && name !== '.' && name !== '..' ? name : 'app';
}

/** chosenTargets: BP_GO_TARGETS (colon-separated relative packages), or undefined for every main package. */
function chosenTargets(env: NodeJS.ProcessEnv, module: string | undefined): Target[] | undefined {
  const chosen = env.BP_GO_TARGETS?.split(':')
    .map((t) => t.trim())
    .filter(Boolean);
  if (!chosen?.length) return undefined;
  for (const t of chosen)
    if (!/^\.(\/[A-Za-z0-9_.-]+)*$/.test(t) || t.split('/').includes('..'))
      throw fail('targets', `BP_GO_TARGETS entry "${t}" is not a relative package path like ./cmd/web`);
  return chosen.map((pkg) => ({ pkg, name: binaryName(pkg === '.' ? (module ?? 'app') : pkg, module) }));
}

/**
 * builtTargets names what `go build -o dir/ ./...` wrote: the module's root package first (its
 * binary is named after the module), then the others by name.
 */
async function builtTargets(binDir: string, module: string | undefined): Promise<Target[]> {
  const root = binaryName(module ?? 'app', module);
  const names = (await readdir(binDir)).sort((a, b) =>
    a === root ? -1 : b === root ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );
  return names.map((name) => ({ pkg: name === root ? '.' : name, name }));
}

async function mainFiles(appDir: string): Promise<string[]> {
  return (await readdir(appDir)).filter((f) => f.endsWith('.go') && !f.endsWith('_test.go')).sort();
}

/**
 * modules lists the Go modules compiled into the binaries (their build info, read in-process;
 * `go version -m` when that fails), as pkg:golang purls.
 */
async function modules(binDir: string, env: NodeJS.ProcessEnv): Promise<Component[]> {
  const seen = new Map<string, Component>();
  for (const f of await readdir(binDir)) {
    const info =
      goModInfo(join(binDir, f)) ??
      spawnSync('go', ['version', '-m', join(binDir, f)], { env, encoding: 'utf8' }).stdout ??
      '';
    for (const line of info.split('\n')) {
      const m = /^\s*(mod|dep)\s+(\S+)\s+(v\S+)/.exec(line);
      if (!m || m[3] === '(devel)') continue;
      const [, , path, version] = m as unknown as [string, string, string, string];
      seen.set(`${path}@${version}`, {
        name: path,
        version,
        purl: `pkg:golang/${path}@${version}`,
        type: 'library',
        ecosystem: 'go-module',
      });
    }
  }
  return [...seen.values()];
}
