import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BuildpackFailure, log } from '../../_shared/main.ts';

// Debian's JDK reads its trusted CAs from lib/security/cacerts, a link to
// /etc/ssl/certs/java/cacerts that ca-certificates-java's maintainer script fills — and maintainer
// scripts never run here. So the keystore is made from a PEM bundle (the build image's CA
// certificates, plus those the platform added through SSL_CERT_FILE): by a small Java program run
// with the JDK's source launcher, since keytool imports one certificate per run.

const PROGRAM = `
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;

public class Cacerts {
  public static void main(String[] args) throws Exception {
    KeyStore ks = KeyStore.getInstance("PKCS12");
    ks.load(null, null);
    int n = 0;
    try (FileInputStream in = new FileInputStream(args[0])) {
      for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
        X509Certificate x = (X509Certificate) c;
        ks.setCertificateEntry("kiln-" + (n++) + "-" + x.getSerialNumber().toString(16), x);
      }
    }
    try (FileOutputStream out = new FileOutputStream(args[1])) {
      ks.store(out, "changeit".toCharArray());
    }
    System.out.println(n);
  }
}
`;

/** caBundle is the PEM bundle to trust: SSL_CERT_FILE (the platform's, with added CAs) or the image's. */
export function caBundle(env: NodeJS.ProcessEnv): string {
  return env.SSL_CERT_FILE?.trim() || '/etc/ssl/certs/ca-certificates.crt';
}

/**
 * writeCacerts makes `<layer>/etc/ssl/certs/java/cacerts` (where the JDK's cacerts link points)
 * from `bundle`, using the JDK's `java`. Kept when the bundle's sha256 is the one it was made from.
 */
export async function writeCacerts(
  layerDir: string,
  jdkJava: string,
  bundle: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const pem = await readFile(bundle).catch(() => undefined);
  if (!pem) {
    log(`  WARNING: no CA bundle at ${bundle}: Java will trust no certificate authority`);
    return;
  }
  const dest = join(layerDir, 'etc/ssl/certs/java/cacerts');
  const stamp = `${dest}.sha256`;
  const digest = createHash('sha256').update(pem).digest('hex');
  if ((await readFile(stamp, 'utf8').catch(() => '')) === digest) {
    log(`  Java CA keystore: kept (${bundle} unchanged)`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'kiln-cacerts-'));
  try {
    await writeFile(join(dir, 'Cacerts.java'), PROGRAM);
    await mkdir(dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${process.pid}`;
    const res = spawnSync(jdkJava, ['-Xshare:off', join(dir, 'Cacerts.java'), bundle, tmp], {
      encoding: 'utf8',
      env: { PATH: env.PATH ?? '/usr/bin:/bin', HOME: dir },
    });
    if (res.status !== 0)
      throw new BuildpackFailure(
        `kiln/java: cannot make the Java CA keystore from ${bundle}: ${(res.stderr || res.error?.message || '').trim()}`,
      );
    await rename(tmp, dest);
    await writeFile(stamp, digest);
    log(`  Java CA keystore: ${res.stdout.trim()} certificates from ${bundle}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(`${dest}.tmp-${process.pid}`, { force: true });
  }
}
