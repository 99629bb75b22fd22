/**
 * escapeId turns a buildpack ID into its on-disk directory name (`/` becomes `_`). Only paths are
 * escaped; labels and TOML values keep the real ID.
 */
export function escapeId(id: string): string {
  return id.replaceAll('/', '_');
}

/** IDs a buildpack may not have, because they name lifecycle directories under `<layers>`. */
export const RESERVED_BUILDPACK_IDS: readonly string[] = ['app', 'config', 'generated', 'sbom'];

/**
 * LAYER_NAME_PATTERN: a layer name is one path component (`<layers>/<bp>/<name>`, `<name>.toml`),
 * also when it comes back from an image label or a cache: no "/", "\\" or control characters,
 * not "." or "..".
 */
export const LAYER_NAME_PATTERN = /^(?!\.\.?$)[^/\\\p{Cc}]+$/u;

/** What LAYER_NAME_PATTERN asks for, for error messages. */
export const LAYER_NAME_EXPECTED = 'one path component: no "/", "\\" or control characters, not "." or ".."';

/** Layer names a buildpack may not use, because they name its own output files. */
export const RESERVED_LAYER_NAMES: readonly string[] = ['launch', 'build', 'store'];

/**
 * BUILDPACK_ID_PATTERN is the character set the buildpack spec allows in IDs, without "." and
 * "..": an escaped ID names a directory on the host (`<layers>/<id>`, `/cnb/buildpacks/<id>`).
 */
export const BUILDPACK_ID_PATTERN = /^(?!\.\.?$)[A-Za-z0-9./-]+$/;

/** What BUILDPACK_ID_PATTERN asks for, for error messages. */
export const BUILDPACK_ID_EXPECTED = 'letters, digits, ".", "/" and "-" only, and not "." or ".."';

/**
 * BUILDPACK_VERSION_PATTERN: a version names a directory too (`/cnb/buildpacks/<id>/<version>`),
 * and is printed: no "/", "\\" or control characters, not "." or "..".
 */
export const BUILDPACK_VERSION_PATTERN = /^(?!\.\.?$)[^/\\\p{Cc}]+$/u;

/** What BUILDPACK_VERSION_PATTERN asks for, for error messages. */
export const BUILDPACK_VERSION_EXPECTED = 'no "/", "\\" or control characters, and not "." or ".."';
