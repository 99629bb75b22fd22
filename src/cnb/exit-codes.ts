// KilnError and the exit codes live in src/internal/ (every folder raises them); re-exported here
// for the folders that import them from the spec module.
export { ExitCode, type ExitCodeValue, KilnError } from '../internal/kiln-error.ts';
