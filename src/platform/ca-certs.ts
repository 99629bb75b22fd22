import { createHash, X509Certificate } from 'node:crypto';
import { mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { toTomlText } from '../cnb/toml-file.ts';
import { writeFileAtomic } from '../internal/atomic-write.ts';
import { UsageError } from '../internal/errors.ts';
import type { Mount } from '../sandbox/executor.ts';
import { cyclonedxHeader, sbomText } from '../sbom/document.ts';
import { type Binding, bindingOf } from './bindings.ts';

// Extra CA certificates for builds. Builds behind a TLS-intercepting proxy need its CA;
// kiln makes extra certificates effective three ways, for detect and build only:
//  1. a `ca-certificates` binding (one file per certificate): buildpacks that know the binding
//     convention (e.g. Paketo's ca-certificates buildpack) use it;
//  2. a merged bundle (the build image's own bundle + the extras) bind-mounted read-only over the
//     build image's standard bundle path, so every OpenSSL/GnuTLS/curl/git inside it trusts them
//     without knowing anything;
//  3. environment variables for tools that carry their own trust store (see caEnv below).
// Nothing reaches the app image unless the user asks (--ca-certs-launch: writeCaLaunchLayer).

/** Where Debian-family images keep their bundle (also Ubuntu, Alpine's ca-certificates). */
export const STANDARD_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** One certificate. */
export interface CaCert {
  /** PEM text of this certificate alone, ending with a newline. */
  readonly pem: string;
  /** SHA-256 of the DER bytes, lowercase hex (dedupes and names files). */
  readonly fingerprint: string;
  readonly subject: string;
  /** The file it came from. */
  readonly source: string;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/** The base64 body of every CERTIFICATE block, whitespace removed. */
function* certificateBlocks(text: string): Generator<string> {
  for (const m of text.matchAll(BLOCK)) {
    if (m[1] !== 'CERTIFICATE') continue;
    yield m[2]!.replace(/\s+/g, '');
  }
}

/** pemOf is the PEM text of a certificate body, re-wrapped at 64 columns. */
function pemOf(body: string): string {
  return `-----BEGIN CERTIFICATE-----\n${body.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

/**
 * parsePemCertificates returns every CERTIFICATE block of a PEM text, each parsed as X.509. Other
 * block types (keys, CRLs) are skipped. Throws a KilnError naming `source` when there is no
 * certificate or a block does not parse. A block whose DER fingerprint is in `known` (the host's
 * system bundle) is that very certificate, already vouched for: it is not parsed again (its
 * subject is, when asked for), which spares ~0.05 ms per certificate of a file that repeats the
 * system bundle.
 */
export function parsePemCertificates(text: string, source: string, known?: ReadonlySet<string>): CaCert[] {
  const out: CaCert[] = [];
  let n = 0;
  for (const body of certificateBlocks(text)) {
    n++;
    if (known !== undefined && known.size > 0) {
      const light = lightCert(body, source);
      if (light !== undefined && known.has(light.fingerprint)) {
        out.push(light);
        continue;
      }
    }
    const pem = pemOf(body);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (err) {
      throw new UsageError(
        `CA certificate file ${source}: certificate #${n} is not a valid X.509 certificate (${(err as Error).message})`,
      );
    }
    out.push({
      pem,
      fingerprint: createHash('sha256').update(cert.raw).digest('hex'),
      subject: cert.subject.replace(/\n/g, ', '),
      source,
    });
  }
  if (out.length === 0)
    throw new UsageError(
      `CA certificate file ${source}: no PEM certificate found (expected a "-----BEGIN CERTIFICATE-----" block)`,
    );
  return out;
}

/**
 * splitPemCertificates is parsePemCertificates for system bundles (the host's, the build image's),
 * which their package manager already vouches for: blocks are split and fingerprinted (SHA-256 of
 * the base64-decoded DER, as X.509 parsing would give) without parsing each certificate, ~20x
 * faster for a full bundle; a subject is parsed only when asked for. An empty bundle gives [].
 */
export function splitPemCertificates(text: string, source: string): CaCert[] {
  const out: CaCert[] = [];
  for (const body of certificateBlocks(text)) {
    const c = lightCert(body, source);
    if (c !== undefined) out.push(c);
  }
  return out;
}

/**
 * lightCert fingerprints a block without parsing it; its PEM text and subject are made on first
 * use (a system bundle's certificates are mostly only compared by fingerprint).
 */
function lightCert(body: string, source: string): CaCert | undefined {
  const fingerprint = fingerprintOf(body);
  if (fingerprint === undefined) return undefined;
  let pem: string | undefined;
  let subject: string | undefined;
  return {
    get pem() {
      pem ??= pemOf(body);
      return pem;
    },
    fingerprint,
    get subject() {
      subject ??= subjectOf(this.pem);
      return subject;
    },
    source,
  };
}

/**
 * Fingerprints by base64 body, remembered: a build splits the host's bundle and then the build
 * image's, which mostly hold the same certificates (a map lookup instead of a base64 decode and a
 * SHA-256 each). Bounded: cleared when full.
 */
const fingerprints = new Map<string, string>();
const FINGERPRINTS_KEPT = 4096;

/** fingerprintOf is the SHA-256 of a body's DER bytes (undefined when it decodes to nothing). */
function fingerprintOf(body: string): string | undefined {
  const known = fingerprints.get(body);
  if (known !== undefined) return known;
  const der = Buffer.from(body, 'base64');
  if (der.length === 0) return undefined;
  const fingerprint = createHash('sha256').update(der).digest('hex');
  if (fingerprints.size >= FINGERPRINTS_KEPT) fingerprints.clear();
  fingerprints.set(body, fingerprint);
  return fingerprint;
}

function subjectOf(pem: string): string {
  try {
    return new X509Certificate(pem).subject.replace(/\n/g, ', ');
  } catch {
    // Only for the message: an unparsable certificate is named as such.
    return 'unparsable certificate';
  }
}

/**
 * readCaCertFile reads and validates a PEM file of one or more certificates (`known`: fingerprints
 * of the host's system bundle, see parsePemCertificates).
 */
export async function readCaCertFile(file: string, known?: ReadonlySet<string>): Promise<CaCert[]> {
  return parsePemCertificates(await readCaText(file), file, known);
}

/**
 * readSystemCaBundle reads a system bundle (the host's) with splitPemCertificates: no per-certificate
 * X.509 validation, [] when it holds no certificate.
 */
export async function readSystemCaBundle(file: string): Promise<CaCert[]> {
  return splitPemCertificates(await readCaText(file), file);
}

async function readCaText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `CA certificate file ${file}: ${code === 'ENOENT' ? 'does not exist' : `cannot read (${code})`}`,
      { cause: err },
    );
  }
}

/** dedupeCerts keeps the first of certificates with the same fingerprint, in order. */
export function dedupeCerts(certs: readonly CaCert[]): CaCert[] {
  const seen = new Set<string>();
  return certs.filter((c) => !seen.has(c.fingerprint) && seen.add(c.fingerprint));
}

/**
 * caCertificatesBinding is the `ca-certificates` binding: one file per certificate, named by its
 * fingerprint so that the set (not the order of flags) decides the content.
 */
export function caCertificatesBinding(certs: readonly CaCert[], name = 'ca-certificates'): Binding {
  const entries: Record<string, string> = {};
  for (const c of dedupeCerts(certs)) entries[`${c.fingerprint.slice(0, 16)}.pem`] = c.pem;
  return bindingOf(name, 'ca-certificates', entries, 'kiln');
}

/**
 * Build-time environment for tools with their own trust store, all pointing at the merged bundle:
 * - SSL_CERT_FILE: OpenSSL's default file (Go, Ruby, Python's ssl, OpenSSL-linked curl/git);
 * - NODE_EXTRA_CA_CERTS: Node.js (npm, yarn, pnpm, corepack) only adds to its built-in Mozilla store;
 * - REQUESTS_CA_BUNDLE, PIP_CERT: pip and requests use certifi's bundle, not the system's;
 * - CURL_CA_BUNDLE, GIT_SSL_CAINFO: curl and git binaries from buildpack layers compiled with
 *   another default path.
 * These are the variables CI images behind intercepting proxies set (this machine's own
 * environment sets exactly these). Those that *replace* a store are only set when the bundle also
 * holds public roots (the image's own bundle or the host's); NODE_EXTRA_CA_CERTS only adds, so it
 * is always safe. JVM trust stores are out of reach of env vars: the binding serves them.
 */
export function caEnv(bundlePath: string, hasPublicRoots: boolean): Record<string, string> {
  const env: Record<string, string> = { NODE_EXTRA_CA_CERTS: bundlePath };
  if (hasPublicRoots) {
    for (const k of ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'PIP_CERT', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'])
      env[k] = bundlePath;
  }
  return env;
}

/** Options of prepareCaTrust. */
export interface CaTrustOptions {
  /** Extra certificates (user files, and the host bundle when trusted), in order. */
  readonly certs: readonly CaCert[];
  /** Whether `certs` include the host's bundle (which holds public roots). */
  readonly includesHostBundle: boolean;
  /** The build image's root filesystem on the host (its own bundle is read from it). */
  readonly buildRootfs: string;
  /** A kiln-private directory for the merged bundle (outside anything exported or cached). */
  readonly stageDir: string;
  /** Path of the platform directory inside the sandbox (default /platform). */
  readonly platformMount?: string;
}

/** What a build needs for extra CA trust: sandbox mounts, process env and a binding. */
export interface CaTrust {
  readonly mounts: readonly Mount[];
  readonly env: Readonly<Record<string, string>>;
  /** The ca-certificates binding of the certificates the image's bundle lacks (none when it has all). */
  readonly bindings: readonly Binding[];
  /** The merged bundle on the host (also staged as `<platform>/kiln/ca-certificates.crt`). */
  readonly bundleFile: string;
  /** Number of certificates added on top of the build image's bundle. */
  readonly added: number;
}

/**
 * prepareCaTrust writes the merged bundle (the build image's bundle + the extras not already in
 * it) and returns how to make it effective: a read-only mount over the image's bundle path when
 * the image has one, env vars pointing at it, and the ca-certificates binding. When the build
 * image has no bundle at the standard path, env vars point at the copy in the platform directory
 * (which the /platform mount of detect and build brings along) instead.
 */
export async function prepareCaTrust(opts: CaTrustOptions): Promise<CaTrust> {
  const platformMount = opts.platformMount ?? '/platform';
  const extras = dedupeCerts(opts.certs);
  let baseText = '';
  let baseTarget: string | undefined;
  const inRootfs = path.join(opts.buildRootfs, STANDARD_BUNDLE);
  try {
    // Resolve a symlinked bundle inside the rootfs (e.g. -> /etc/pki/...), so the mount covers the real file.
    const real = await realpath(inRootfs);
    const rootReal = await realpath(opts.buildRootfs);
    const rel = path.relative(rootReal, real);
    if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) {
      baseText = await readFile(real, 'utf8');
      baseTarget = '/' + rel.split(path.sep).join('/');
    }
  } catch {
    // No bundle in the build image: extras only.
  }
  const baseFingerprints = new Set<string>();
  // The image's own bundle is a system file: split, not validated (an odd block only loses dedup).
  for (const c of splitPemCertificates(baseText, inRootfs)) baseFingerprints.add(c.fingerprint);
  const added = extras.filter((c) => !baseFingerprints.has(c.fingerprint));
  let merged = baseText;
  if (merged && !merged.endsWith('\n')) merged += '\n';
  for (const c of added) merged += `# kiln: ${c.subject} (from ${path.basename(c.source)})\n${c.pem}`;
  await mkdir(opts.stageDir, { recursive: true });
  const bundleFile = path.join(opts.stageDir, 'ca-certificates.crt');
  await writeFileAtomic(bundleFile, merged, 0o644);

  const hasPublicRoots = baseFingerprints.size > 0 || opts.includesHostBundle;
  const mounts: Mount[] = [];
  let inSandbox: string;
  if (baseTarget) {
    // Nothing added: the image's own bundle already says it all, so nothing is mounted over it
    // (which also lets the host executor, that mounts nothing, build with trusted-but-present CAs).
    if (added.length > 0) mounts.push({ src: bundleFile, dst: baseTarget, readonly: true });
    inSandbox = baseTarget;
  } else {
    inSandbox = `${platformMount}/kiln/ca-certificates.crt`;
  }
  return {
    mounts,
    env: caEnv(inSandbox, hasPublicRoots),
    // Only what the image does not already trust: the host bundle would otherwise add ~300 files
    // to every build's platform dir (~0.1-0.2 s of file creation) that say nothing new.
    bindings: added.length > 0 ? [caCertificatesBinding(added)] : [],
    bundleFile,
    added: added.length,
  };
}

/** Options of writeCaLaunchLayer. */
export interface CaLaunchLayerOptions {
  readonly certs: readonly CaCert[];
  /** The layer's path inside the app image, e.g. /layers/kiln_ca-certificates/ca-certificates. */
  readonly layerPath: string;
  /**
   * The run image's own bundle text, when the caller can read it: the layer then carries a merged
   * bundle and SSL_CERT_FILE points at it. Without it only NODE_EXTRA_CA_CERTS is set, because
   * replacing the system store with the extras alone would drop the public roots.
   */
  readonly runImageBundle?: string;
}

/**
 * writeCaLaunchLayer fills `dir` (the layer directory on the host; its `.toml` is written next to
 * it as `<dir>.toml`) with a launch layer for `--ca-certs-launch`: `ca-certificates.crt`, one
 * `certs/<fingerprint>.pem` per certificate, `env.launch/` variables, and a CycloneDX SBOM
 * (`<dir>.sbom.cdx.json`) listing each certificate, so the image says what trust it ships.
 */
export async function writeCaLaunchLayer(dir: string, opts: CaLaunchLayerOptions): Promise<void> {
  const certs = dedupeCerts(opts.certs);
  await mkdir(path.join(dir, 'certs'), { recursive: true });
  await mkdir(path.join(dir, 'env.launch'), { recursive: true });
  for (const c of certs) await writeFile(path.join(dir, 'certs', `${c.fingerprint.slice(0, 16)}.pem`), c.pem);
  let bundle = opts.runImageBundle ?? '';
  if (bundle && !bundle.endsWith('\n')) bundle += '\n';
  bundle += certs.map((c) => c.pem).join('');
  await writeFile(path.join(dir, 'ca-certificates.crt'), bundle);
  const bundlePath = `${opts.layerPath}/ca-certificates.crt`;
  const env = caEnv(bundlePath, opts.runImageBundle !== undefined);
  for (const [k, v] of Object.entries(env)) {
    // REQUESTS_CA_BUNDLE etc. only matter to build tools; at launch, the OpenSSL and Node ones do.
    if (k === 'SSL_CERT_FILE' || k === 'NODE_EXTRA_CA_CERTS')
      await writeFile(path.join(dir, 'env.launch', `${k}.override`), v);
  }
  await writeFile(`${dir}.toml`, toTomlText({ types: { launch: true, build: false, cache: false } }));
  await writeFile(`${dir}.sbom.cdx.json`, sbomText(caSbom(certs)));
}

/** caSbom is a CycloneDX 1.6 document listing certificates as cryptographic assets. */
export function caSbom(certs: readonly CaCert[]): object {
  return {
    ...cyclonedxHeader(),
    metadata: {
      component: {
        type: 'data',
        name: 'ca-certificates (added by kiln --ca-certs-launch)',
        description: 'Extra CA certificates the user asked to trust at runtime',
      },
    },
    components: certs.map((c) => ({
      type: 'cryptographic-asset',
      'bom-ref': `cert-${c.fingerprint}`,
      name: c.subject,
      cryptoProperties: { assetType: 'certificate', certificateProperties: { subjectName: c.subject } },
      hashes: [{ alg: 'SHA-256', content: c.fingerprint }],
    })),
  };
}

/**
 * caSecrets lists what of user-supplied certificates to hand to the Redactor: they describe a
 * private network, so they stay out of logs like other build inputs. Only the base64 body lines,
 * so that "-----BEGIN CERTIFICATE-----" itself is not redacted everywhere. Certificates whose
 * fingerprint is in `public` (e.g. the host's system bundle, public roots) are no secret and are
 * left out: a user file that repeats the system bundle would otherwise add thousands of secrets,
 * each one checked against every log line.
 */
export function caSecrets(certs: readonly CaCert[], publicFingerprints?: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const c of certs)
    if (!publicFingerprints?.has(c.fingerprint))
      for (const line of c.pem.split('\n'))
        if (line.length >= 16 && !line.startsWith('-----')) out.push(line);
  return out;
}
