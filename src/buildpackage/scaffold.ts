import { chmod, mkdir, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SUPPORTED_BUILDPACK_APIS } from '../cnb/api.ts';
import { BUILDPACK_ID_PATTERN, escapeId, RESERVED_BUILDPACK_IDS } from '../cnb/ids.ts';
import { toTomlText } from '../cnb/toml-file.ts';
import { UsageError } from '../internal/errors.ts';
import { tempSibling } from '../internal/temp-name.ts';

/** A target of a new buildpack: `os/arch[/variant]`. */
export interface ScaffoldTarget {
  readonly os: string;
  readonly arch?: string;
  readonly variant?: string;
}

/** Options of scaffoldBuildpack. */
export interface ScaffoldOptions {
  readonly id: string;
  /** Directory to create; it must not exist or be empty. */
  readonly dir: string;
  readonly api: string;
  readonly version?: string;
  readonly targets: readonly ScaffoldTarget[];
}

/** parseTarget reads `os[/arch[/variant]]` (pack's --targets form, without distros). */
export function parseTarget(s: string): ScaffoldTarget {
  const [os, arch, variant, ...rest] = s.split('/');
  if (!os || rest.length > 0 || arch === '' || variant === '')
    throw new UsageError(`--targets "${s}": expected os[/arch[/variant]], e.g. linux/amd64`);
  return { os, ...(arch ? { arch } : {}), ...(variant ? { variant } : {}) };
}

// bin/detect passes for every app: a starting point, as pack's scaffold. Positional arguments
// are the fallback for Buildpack API < 0.8, which has no CNB_* path variables.
const DETECT = `#!/usr/bin/env bash
# bin/detect: exit 0 to take part in the build, 100 to pass on this app.
# CNB_PLATFORM_DIR: platform inputs; CNB_BUILD_PLAN_PATH: where to write what this buildpack
# provides and requires (TOML).
set -euo pipefail
exit 0
`;

const build = (id: string) => `#!/usr/bin/env bash
# bin/build: contribute layers to CNB_LAYERS_DIR (one directory per layer, plus <layer>.toml
# saying whether it is needed at build time, at launch, or cached).
set -euo pipefail
layers_dir="\${CNB_LAYERS_DIR:-$1}"

echo "---> ${id}"
layer="$layers_dir/hello"
mkdir -p "$layer/env.launch"
echo "hello from ${id}" > "$layer/hello.txt"
printf '%s' "$layer/hello.txt" > "$layer/env.launch/HELLO_FILE.override"
cat > "$layers_dir/hello.toml" <<'EOF'
[types]
launch = true
EOF
`;

const readme = (id: string, api: string) => `# ${id}

A Cloud Native Buildpack (Buildpack API ${api}) made with \`kiln buildpack new\`.

- \`buildpack.toml\` — id, version, targets.
- \`bin/detect\` — passes for every app (edit it to look for the files your buildpack needs).
- \`bin/build\` — adds one launch layer, \`hello\`, holding \`hello.txt\` and the env var
  \`HELLO_FILE\` pointing at it in the app image.

Try it: \`kiln build my-app --path ./app --buildpack path/to/this/dir\`; package it:
\`kiln buildpack package ${escapeId(id)} --config package.toml\` with a package.toml of
\`[buildpack] uri = "."\`.
`;

/**
 * scaffoldBuildpack writes a new bash buildpack (buildpack.toml, bin/detect, bin/build, README.md,
 * package.toml) to `opts.dir`. The files appear all at once: they are written to a temp
 * directory next to it and renamed into place.
 */
export async function scaffoldBuildpack(opts: ScaffoldOptions): Promise<string[]> {
  const { id, api } = opts;
  if (!BUILDPACK_ID_PATTERN.test(id) || RESERVED_BUILDPACK_IDS.includes(id.toLowerCase()))
    throw new UsageError(
      `buildpack id "${id}": may only contain letters, digits, ".", "/" and "-" and must not be a reserved id`,
    );
  if (!SUPPORTED_BUILDPACK_APIS.includes(api))
    throw new UsageError(`--api ${api}: expected one of ${SUPPORTED_BUILDPACK_APIS.join(', ')}`);
  const dir = path.resolve(opts.dir);
  const existing = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw new UsageError(`${dir}: ${e.code ?? e.message}`);
  });
  if (existing.length > 0)
    throw new UsageError(`${dir} already exists and is not empty: pick another --path`);

  const descriptor = {
    api,
    buildpack: { id, version: opts.version ?? '0.0.1', name: id },
    ...(opts.targets.length
      ? {
          targets: opts.targets.map((t) => ({
            os: t.os,
            ...(t.arch ? { arch: t.arch } : {}),
            ...(t.variant ? { variant: t.variant } : {}),
          })),
        }
      : {}),
  };
  const files: [string, string, number][] = [
    ['buildpack.toml', toTomlText(descriptor), 0o644],
    ['bin/detect', DETECT, 0o755],
    ['bin/build', build(id), 0o755],
    ['README.md', readme(id, api), 0o644],
    ['package.toml', '[buildpack]\nuri = "."\n', 0o644],
  ];
  await mkdir(path.dirname(dir), { recursive: true });
  const temp = tempSibling(dir);
  try {
    await mkdir(path.join(temp, 'bin'), { recursive: true, mode: 0o755 });
    await chmod(temp, 0o755);
    await chmod(path.join(temp, 'bin'), 0o755);
    for (const [name, text, mode] of files) {
      await writeFile(path.join(temp, name), text, { mode });
      await chmod(path.join(temp, name), mode); // whatever the umask
    }
    await rmdir(dir).catch(() => {}); // an empty directory is replaced
    await rename(temp, dir);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  return files.map(([n]) => n);
}
