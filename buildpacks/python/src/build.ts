import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { buildContext } from '../../_shared/context.ts';
import { exists } from '../../_shared/fsutil.ts';
import { writeLaunchToml } from '../../_shared/launch.ts';
import { previousLayer, resetLayer, writeEnv, writeLayerToml } from '../../_shared/layer.ts';
import { log, main } from '../../_shared/main.ts';
import { writeSboms } from '../../_shared/sbom.ts';
import { entryFile, requirements } from './project.ts';
import { fileSha256, installRuntime, probe } from './runtime.ts';
import { installVenv, pipInput } from './venv.ts';

const TOOL = { name: 'kiln/python', version: '0.1.0' };
const TYPES = { build: true, launch: true, cache: true };

function debVersion(pkg: string): string | undefined {
  const res = spawnSync('dpkg-query', ['-W', '--showformat', '$' + '{Version}', pkg], { encoding: 'utf8' });
  return res.status === 0 && res.stdout.trim() ? res.stdout.trim() : undefined;
}

main(async () => {
  const ctx = buildContext(process.argv.slice(2), process.env, process.cwd());
  const py = await probe(ctx.env);
  const key = { version: py.version, binary: await fileSha256(py.executable) };
  const prev = await previousLayer(ctx.layersDir, 'python');
  if (prev?.hasContents && prev.metadata.version === key.version && prev.metadata.binary === key.binary) {
    log(`  reusing the Python ${py.version} layer`);
  } else {
    log(`  Python ${py.version} from the build image (${py.executable})`);
    const dir = await resetLayer(ctx.layersDir, 'python');
    const libs = await installRuntime(py, dir);
    log(`  copied the standard library and ${libs.length} shared libraries`);
    await writeEnv(dir, 'env.launch', 'PYTHONUNBUFFERED', 'default', '1');
    // Layers are read-only at run time: do not try to write .pyc files there.
    await writeEnv(dir, 'env.launch', 'PYTHONDONTWRITEBYTECODE', 'default', '1');
    const deb = debVersion(py.name);
    await writeSboms(
      join(ctx.layersDir, 'python'),
      [
        {
          name: deb ? py.name : 'python',
          version: deb ?? py.version,
          purl: deb
            ? `pkg:deb/debian/${py.name}@${encodeURIComponent(deb)}?arch=amd64&distro=debian-12`
            : `pkg:generic/python@${py.version}`,
          type: 'application',
          ecosystem: deb ? 'deb' : 'binary',
          license: 'PSF-2.0',
        },
      ],
      TOOL,
      ctx.env,
    );
  }
  await writeLayerToml(ctx.layersDir, 'python', TYPES, key);

  const reqs = await requirements(ctx.appDir);
  const input = await pipInput(ctx.appDir, reqs.length > 0);
  let venv: string | undefined;
  if (input)
    venv = await installVenv({
      layersDir: ctx.layersDir,
      appDir: ctx.appDir,
      platformDir: ctx.platformDir,
      env: ctx.env,
      python: join(ctx.layersDir, 'python', 'bin', 'python3'),
      pythonKey: `${key.version} ${key.binary}`,
      input,
      tool: TOOL,
    });

  if (!(await exists(join(ctx.appDir, 'Procfile')))) {
    const entry = await entryFile(ctx.appDir);
    if (entry) {
      log(`  web: python ${entry}${venv ? ' (the venv interpreter)' : ''}`);
      // The venv's interpreter by path: it finds the installed packages whatever PATH says.
      const python = venv ? join(venv, 'bin', 'python') : 'python';
      await writeLaunchToml(ctx.layersDir, [{ type: 'web', command: [python, entry], default: true }]);
    }
  }
  return 0;
});
