// Redaction of secrets from text that may reach a user (errors, logs). The registry client never
// puts credentials into messages on purpose; this is the second line of defence for text that
// comes from elsewhere (a registry's error body echoing a header, a URL with user info).

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

const known = new Set<string>();

/**
 * addSecret registers a literal secret (a password, a token) so that `redact` removes it from any
 * text. Secrets shorter than 4 characters are ignored (they would redact ordinary words).
 */
export function addSecret(secret: string | undefined): void {
  if (secret && secret.length >= 4) known.add(secret);
}

/** redact removes registered secrets and credential-looking patterns from `text`. */
export function redact(text: string): string {
  let out = text;
  for (const s of known) if (out.includes(s)) out = out.split(s).join('[REDACTED]');
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
  return out;
}
