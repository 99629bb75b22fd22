/**
 * Redactor collects the secret values of one kiln run (binding entries, proxy passwords, registry
 * credentials, user-supplied CA files) and removes them from any text before it is shown:
 * `redact(line)` for log lines and buildpack output, `lineFilter(sink)` for a line-oriented stream.
 *
 * Wiring: the CLI creates one with `onSecret: addSecret` (src/registry/redact.ts), so everything the
 * Logger prints — it passes every line through that module's `redact` — is covered too, including
 * error messages and stacks.
 */
export class Redactor {
  /** Values shorter than this are not registered: they would redact ordinary words ("true", "1"). */
  static readonly MIN_LENGTH = 4;

  readonly #secrets = new Set<string>();
  readonly #onSecret: ((secret: string) => void) | undefined;
  #pattern: RegExp | undefined;

  constructor(opts: { onSecret?: (secret: string) => void } = {}) {
    this.#onSecret = opts.onSecret;
  }

  /**
   * add registers a secret and the forms it is likely to appear in: as given, trimmed (files
   * usually end with a newline), each line of a multi-line value (logs are line based), and
   * percent-encoded (inside URLs).
   */
  add(secret: string | undefined): void {
    if (secret === undefined) return;
    const forms = new Set<string>([secret, secret.trim()]);
    if (secret.includes('\n')) for (const line of secret.split(/\r?\n/)) forms.add(line.trim());
    for (const f of [...forms]) {
      const enc = encodeURIComponent(f);
      if (enc !== f) forms.add(enc);
    }
    for (const f of forms) {
      if (f.length < Redactor.MIN_LENGTH || this.#secrets.has(f)) continue;
      this.#secrets.add(f);
      this.#pattern = undefined;
      this.#onSecret?.(f);
    }
  }

  /** How many distinct forms are registered. */
  get size(): number {
    return this.#secrets.size;
  }

  /** redact replaces every registered secret in `text` with `[REDACTED]`. */
  redact(text: string): string {
    if (this.#secrets.size === 0) return text;
    this.#pattern ??= new RegExp(
      // Longest first, so a secret containing another is replaced whole.
      [...this.#secrets]
        .sort((a, b) => b.length - a.length)
        .map(escapeRegExp)
        .join('|'),
      'g',
    );
    return text.replace(this.#pattern, '[REDACTED]');
  }

  /** lineFilter wraps a line sink (e.g. buildpack output going to the log) with redaction. */
  lineFilter(sink: (line: string) => void): (line: string) => void {
    return (line) => sink(this.redact(line));
  }
}

/**
 * secretFragments finds values inside structured secret files, which logs may show alone: the
 * value of each `key=value` line (npmrc, .env, properties) and of each `"key": "value"` pair
 * (docker config.json, JSON credentials). Only values of 8 characters or more: shorter ones are
 * more likely flags than secrets.
 */
export function secretFragments(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const kv = /^[^=#;\s][^=]*=\s*(.+?)\s*$/.exec(line);
    if (kv) out.add(kv[1]!.replace(/^(["'])(.*)\1$/, '$2'));
  }
  for (const m of text.matchAll(/"[^"\\]*"\s*:\s*"((?:[^"\\]|\\.)*)"/g)) out.add(m[1]!);
  return [...out].filter((v) => v.length >= 8);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
