// Test helper: a throw-away certificate authority and a server certificate for 127.0.0.1, made
// with the openssl CLI (Debian's openssl package), for tests of extra CA trust in builds.

import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestCa {
  readonly dir: string;
  /** The CA certificate file (PEM). */
  readonly caFile: string;
  readonly caPem: string;
  /** Server certificate and key for IP 127.0.0.1 and DNS localhost, signed by the CA. */
  readonly serverCert: string;
  readonly serverKey: string;
  cleanup(): Promise<void>;
}

/** makeTestCa creates a CA named `name` and a server certificate signed by it. */
export async function makeTestCa(name = 'kiln test CA'): Promise<TestCa> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-ca-'));
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
  );
  ssl(
    'req',
    '-new',
    ...ec,
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  );
  ssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-copy_extensions',
    'copy',
    '-out',
    f('server.pem'),
  );
  return {
    dir,
    caFile: f('ca.pem'),
    caPem: await readFile(f('ca.pem'), 'utf8'),
    serverCert: await readFile(f('server.pem'), 'utf8'),
    serverKey: await readFile(f('server.key'), 'utf8'),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
