import { resolve } from 'node:path';

/** DetectContext is what the buildpack spec hands to `bin/detect` (API 0.12, plus positional args). */
export interface DetectContext {
  readonly appDir: string;
  readonly buildpackDir: string;
  readonly platformDir: string;
  /** Path of the (initially empty) Build Plan file this buildpack writes. */
  readonly planPath: string;
  readonly execEnv: string;
  readonly env: NodeJS.ProcessEnv;
}

/** BuildContext is what the buildpack spec hands to `bin/build`. */
export interface BuildContext {
  readonly appDir: string;
  readonly buildpackDir: string;
  readonly platformDir: string;
  /** `<layers>/<escaped buildpack id>`: where this buildpack writes its layers and TOML files. */
  readonly layersDir: string;
  /** Path of the Buildpack Plan (the entries this buildpack was asked to meet). */
  readonly planPath: string;
  readonly execEnv: string;
  readonly env: NodeJS.ProcessEnv;
}

function pick(env: NodeJS.ProcessEnv, name: string, positional: string | undefined, what: string): string {
  // The spec gives both: CNB_* variables (API 0.8+) and positional arguments, which the reference
  // lifecycle still passes. Prefer the variable, fall back to the argument.
  const value = env[name] || positional;
  if (!value) throw new Error(`${what} unknown: neither ${name} nor the positional argument is set`);
  // Absolute, because buildpacks store these paths (symlinks, env files) for later phases.
  return resolve(value);
}

/** detectContext reads the detect inputs from the environment and `argv` (`<platform> <plan>`). */
export function detectContext(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): DetectContext {
  return {
    appDir: cwd,
    buildpackDir: pick(env, 'CNB_BUILDPACK_DIR', undefined, 'buildpack directory'),
    platformDir: pick(env, 'CNB_PLATFORM_DIR', argv[0], 'platform directory'),
    planPath: pick(env, 'CNB_BUILD_PLAN_PATH', argv[1], 'build plan path'),
    execEnv: env.CNB_EXEC_ENV || 'production',
    env,
  };
}

/** buildContext reads the build inputs from the environment and `argv` (`<layers> <platform> <plan>`). */
export function buildContext(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): BuildContext {
  return {
    appDir: cwd,
    buildpackDir: pick(env, 'CNB_BUILDPACK_DIR', undefined, 'buildpack directory'),
    layersDir: pick(env, 'CNB_LAYERS_DIR', argv[0], 'layers directory'),
    platformDir: pick(env, 'CNB_PLATFORM_DIR', argv[1], 'platform directory'),
    planPath: pick(env, 'CNB_BP_PLAN_PATH', argv[2], 'buildpack plan path'),
    execEnv: env.CNB_EXEC_ENV || 'production',
    env,
  };
}
