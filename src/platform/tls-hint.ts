// A TLS failure inside a buildpack (npm, curl, git, pip behind an intercepting proxy)
// surfaces as a tool-specific stack trace. TlsFailureDetector watches the buildpack output lines
// that kiln logs anyway and, when the build fails, turns what it saw into one actionable line.

/** Output fragments of certificate-verification failures, by tool. */
const PATTERNS: readonly RegExp[] = [
  /SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|UNABLE_TO_VERIFY_LEAF_SIGNATURE|CERT_UNTRUSTED/, // Node.js / npm
  /self[- ]signed certificate in certificate chain/i, // npm, Node, OpenSSL text
  /unable to get local issuer certificate/i, // OpenSSL, curl, git
  /certificate verify failed/i, // OpenSSL via Python/pip, Ruby
  /SSL certificate problem/i, // curl, git
  /server certificate verification failed/i, // git (gnutls)
  /x509: certificate signed by unknown authority/i, // Go
  /PKIX path building failed/i, // Java
];

/** The hint printed when a failed build showed a certificate error. */
export const TLS_HINT =
  'certificate not trusted: a TLS connection from the build failed verification (an intercepting proxy or a private registry?); pass --ca-certs FILE or trust the host bundle with `kiln config trust-host-ca-certs true`';

/**
 * TlsFailureDetector remembers the first output line that looks like a certificate-verification
 * failure. Feed it every buildpack output line (`observe`); after a failed build, `hint()` gives
 * the explanation to log (undefined when no such line was seen).
 */
export class TlsFailureDetector {
  #evidence: string | undefined;

  observe(line: string): void {
    if (this.#evidence === undefined && PATTERNS.some((p) => p.test(line)))
      this.#evidence = line.trim().slice(0, 200);
  }

  /** The line that matched, if any. */
  get evidence(): string | undefined {
    return this.#evidence;
  }

  /** hint is TLS_HINT plus the evidence, or undefined when nothing matched. */
  hint(): string | undefined {
    return this.#evidence === undefined ? undefined : `${TLS_HINT} (seen: ${this.#evidence})`;
  }

  /** tee wraps a line sink so that every line is observed on its way. */
  tee(sink: (line: string) => void): (line: string) => void {
    return (line) => {
      this.observe(line);
      sink(line);
    };
  }
}
