import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bindingRoot, bindingsOfType } from '../../_shared/bindings.ts';
import { installDebLayer } from '../../_shared/debian/install.ts';
import { run } from '../../_shared/exec.ts';
import { exists, filesDigest } from '../../_shared/fsutil.ts';
import { prependPath, previousLayer, resetLayer, writeEnv, writeLayerToml } from '../../_shared/layer.ts';
import { BuildpackFailure, log } from '../../_shared/main.ts';
import { type Component, type Tool, writeSboms } from '../../_shared/sbom.ts';

// Dependencies go into a virtual environment: the `venv` layer (build + launch + cache), made by
// the shipped interpreter (`<python layer>/bin/python3 -m venv --without-pip`), filled by Debian's
// pip (python3-pip, installed as a build-only layer through _shared/debian) and keyed on what
// decides its contents: the requirements (or pyproject.toml), the interpreter, pip's version and
// the index settings. The index comes from PIP_INDEX_URL / PIP_EXTRA_INDEX_URL or a binding of
// type `pip` holding pip.conf (the only place for index credentials); pip's wheel cache is the
// cache-only layer `pip-cache`.

/** PipInput is what is installed: requirements.txt, or the project itself (pyproject.toml / setup.py). */
export type PipInput =
  | { readonly kind: 'requirements' }
  | { readonly kind: 'project'; readonly file: string };

/** pipInput picks requirements.txt, else a pyproject.toml with a build backend, else setup.py. */
export async function pipInput(appDir: string, hasRequirements: boolean): Promise<PipInput | undefined> {
  if (hasRequirements) return { kind: 'requirements' };
  const pyproject = await readFile(join(appDir, 'pyproject.toml'), 'utf8').catch(() => '');
  if (/^\[build-system\]/m.test(pyproject)) return { kind: 'project', file: 'pyproject.toml' };
  if (await exists(join(appDir, 'setup.py'))) return { kind: 'project', file: 'setup.py' };
  return undefined;
}

/** installVenv fills (or keeps) the `venv` layer and returns its directory. */
export async function installVenv(o: {
  layersDir: string;
  appDir: string;
  platformDir: string;
  env: NodeJS.ProcessEnv;
  python: string;
  pythonKey: string;
  input: PipInput;
  tool: Tool;
}): Promise<string> {
  const pip = await installDebLayer({
    layersDir: o.layersDir,
    layer: 'pip',
    packages: ['python3-pip'],
    types: { build: true, cache: true },
    env: o.env,
    tool: o.tool,
  });
  const pipPath = join(pip.dir, 'usr/lib/python3/dist-packages');
  const binding = (await bindingsOfType(bindingRoot(o.env, o.platformDir), 'pip'))[0];
  const pipConf = binding ? join(binding.path, 'pip.conf') : undefined;
  if (binding && !(await exists(pipConf!)))
    throw new BuildpackFailure(`kiln/python: the pip binding ${binding.name} has no pip.conf entry`);
  const inputFiles =
    o.input.kind === 'requirements'
      ? [join(o.appDir, 'requirements.txt')]
      : [join(o.appDir, o.input.file), join(o.appDir, 'setup.cfg')];
  const pipVersion = pip.packages.find((p) => p.name === 'python3-pip')?.version ?? '';
  // The index settings count (another index may serve other files), the binding's contents do not
  // go into metadata: only a digest of them.
  const key = createHash('sha256')
    .update(await filesDigest(inputFiles))
    .update(
      `\n${o.pythonKey}\n${pipVersion}\n${o.env.PIP_INDEX_URL ?? ''}\n${o.env.PIP_EXTRA_INDEX_URL ?? ''}\n`,
    )
    .update(pipConf ? await filesDigest([pipConf]) : '')
    .digest('hex');
  const prev = await previousLayer(o.layersDir, 'venv');
  const dir = join(o.layersDir, 'venv');
  if (prev?.hasContents && prev.metadata.key === key && o.input.kind === 'requirements') {
    log('  reusing the venv layer (requirements unchanged)');
  } else {
    await resetLayer(o.layersDir, 'venv');
    const mk = spawnSync(o.python, ['-m', 'venv', '--without-pip', dir], { env: o.env, encoding: 'utf8' });
    if (mk.status !== 0) {
      process.stderr.write(mk.stderr ?? '');
      throw new BuildpackFailure('kiln/python failed at step "create the virtual environment"');
    }
    await mkPipCache(o.layersDir);
    const args = [
      '-m',
      'pip',
      'install',
      '--no-input',
      '--disable-pip-version-check',
      '--no-warn-script-location',
    ];
    args.push(...(o.input.kind === 'requirements' ? ['-r', 'requirements.txt'] : ['.']));
    const env: NodeJS.ProcessEnv = {
      ...o.env,
      PYTHONPATH: pipPath,
      PIP_CACHE_DIR: join(o.layersDir, 'pip-cache'),
      VIRTUAL_ENV: dir,
      PYTHONDONTWRITEBYTECODE: '',
      ...(pipConf && { PIP_CONFIG_FILE: pipConf }),
    };
    log(
      `  pip install ${o.input.kind === 'requirements' ? '-r requirements.txt' : '.'} (Debian pip ${pipVersion})`,
    );
    const res = await run(join(dir, 'bin', 'python'), args, { cwd: o.appDir, env });
    if (res.code !== 0) {
      const step = o.input.kind === 'requirements' ? 'pip install -r requirements.txt' : 'pip install .';
      throw new BuildpackFailure(`kiln/python failed at step "${step}": see pip's error above`);
    }
    await writeSboms(dir, await distributions(dir), o.tool, o.env);
  }
  await writeEnv(dir, 'env', 'VIRTUAL_ENV', 'override', dir);
  // Layers are applied in name order: venv/bin goes in front of python/bin.
  await prependPath(dir, 'env', 'PATH', join(dir, 'bin'));
  await writeLayerToml(o.layersDir, 'venv', { build: true, launch: true, cache: true }, { key });
  return dir;
}

async function mkPipCache(layersDir: string): Promise<void> {
  // No process for this (it was `mkdir -p`); a cache it cannot make is pip's warning, not a failure.
  await mkdir(join(layersDir, 'pip-cache'), { recursive: true }).catch(() => undefined);
  await writeLayerToml(layersDir, 'pip-cache', { cache: true }, {});
}

/** distributions lists what the venv holds (`*.dist-info/METADATA`) as pkg:pypi components. */
export async function distributions(venv: string): Promise<Component[]> {
  const lib = join(venv, 'lib');
  const out: Component[] = [];
  for (const py of await readdir(lib).catch(() => [] as string[])) {
    const site = join(lib, py, 'site-packages');
    for (const d of (await readdir(site).catch(() => [] as string[])).sort()) {
      if (!d.endsWith('.dist-info')) continue;
      const meta = await readFile(join(site, d, 'METADATA'), 'utf8').catch(() => '');
      const head = meta.split(/\r?\n\r?\n/)[0] ?? '';
      const name = /^Name:\s*(.+)$/m.exec(head)?.[1]?.trim();
      const version = /^Version:\s*(.+)$/m.exec(head)?.[1]?.trim();
      if (!name || !version) continue;
      const license = /^License-Expression:\s*(.+)$/m.exec(head)?.[1]?.trim();
      const purlName = name.toLowerCase().replace(/[-_.]+/g, '-');
      out.push({
        name,
        version,
        purl: `pkg:pypi/${purlName}@${encodeURIComponent(version)}`,
        type: 'library',
        ecosystem: 'python',
        ...(license && { license }),
      });
    }
  }
  return out;
}
