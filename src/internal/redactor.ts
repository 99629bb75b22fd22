/**
 * Redactor holds the secret values of one kiln run (registry credentials and tokens, binding
 * entries, proxy passwords, user-supplied CA files) and removes them from any text before it is
 * shown. The CLI makes one and passes it to everything that learns a secret or prints a line: its
 * Logger (every line), the registry client (credentials it resolves, tokens it receives), the
 * platform inputs. There is no process-wide set: what one run learned never leaks into another's
 * redaction, and a library user decides what is redacted.
 *
 * `redact` also removes credential-looking patterns (Authorization values, `user:password@` in
 * URLs, secret JSON fields and query parameters) that `redactPatterns` removes alone: the second
 * line of defence for text from elsewhere, such as a registry's error body echoing a header.
 */
export class Redactor {
  /** Values shorter than this are not registered: they would redact ordinary words ("true", "1"). */
  static readonly MIN_LENGTH = 4;

  readonly #secrets = new Set<string>();
  #pattern: RegExp | undefined;

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
    }
  }

  /** How many distinct forms are registered. */
  get size(): number {
    return this.#secrets.size;
  }

  /** redact replaces every registered secret and credential pattern in `text` with `[REDACTED]`. */
  redact(text: string): string {
    let out = text;
    if (this.#secrets.size > 0) {
      this.#pattern ??= new RegExp(
        // Longest first, so a secret containing another is replaced whole.
        [...this.#secrets]
          .sort((a, b) => b.length - a.length)
          .map(escapeRegExp)
          .join('|'),
        'g',
      );
      out = out.replace(this.#pattern, '[REDACTED]');
    }
    return redactPatterns(out);
  }

  /** lineFilter wraps a line sink (e.g. buildpack output going to the log) with redaction. */
  lineFilter(sink: (line: string) => void): (line: string) => void {
    return (line) => sink(this.redact(line));
  }
}

const PATTERNS: ReadonlyArray<[RegExp, string]> = [
  // Authorization header values.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 [REDACTED]'],
  // user:password@ in URLs.
  [/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+:[^/\s@]+@/gi, '$1[REDACTED]@'],
  // JSON fields that carry secrets.
  [
    /("(?:access_token|refresh_token|token|password|secret|identitytoken|registrytoken|auth|Secret)"\s*:\s*")[^"]*"/g,
    '$1[REDACTED]"',
  ],
  // Query parameters that carry secrets.
  [/([?&](?:access_token|refresh_token|token|password|secret)=)[^&\s]+/gi, '$1[REDACTED]'],
];

/** redactPatterns removes credential-looking patterns from `text` (no registered secrets needed). */
export function redactPatterns(text: string): string {
  let out = text;
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
