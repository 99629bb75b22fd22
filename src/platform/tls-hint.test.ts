import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TlsFailureDetector } from './tls-hint.ts';

test('TlsFailureDetector recognises certificate failures of npm, pip, Go and Java, and nothing else', () => {
  const failures = [
    'npm error code SELF_SIGNED_CERT_IN_CHAIN',
    'npm ERR! request to https://registry.example.com/express failed, reason: self-signed certificate in certificate chain',
    'pip._vendor.urllib3.exceptions.SSLError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)',
    'go: github.com/x/y@v1: Get "https://proxy.golang.org/...": x509: certificate signed by unknown authority',
    'sun.security.validator.ValidatorException: PKIX path building failed',
  ];
  for (const line of failures) {
    const d = new TlsFailureDetector();
    const seen: string[] = [];
    const sink = d.tee((l) => seen.push(l));
    sink('added 57 packages in 2s');
    sink(line);
    assert.deepEqual(seen, ['added 57 packages in 2s', line]);
    assert.equal(d.evidence, line.slice(0, 200));
    assert.match(
      d.hint()!,
      /^certificate not trusted: .*--ca-certs FILE.*trust-host-ca-certs true.*\(seen: /,
    );
  }
  const quiet = new TlsFailureDetector();
  for (const l of ['npm error code E404', 'Error: Cannot find module express', 'ECONNREFUSED 127.0.0.1:443'])
    quiet.observe(l);
  assert.equal(quiet.hint(), undefined);
});
