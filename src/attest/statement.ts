import type { Digest } from '../oci/digest.ts';

// The in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
// and its ResourceDescriptor, as kiln writes them: plain read-only values, serialised one way.

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
/** The DSSE payload type of an in-toto statement. */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** ResourceDescriptor: at least one of uri, digest, content (in-toto v1 resource_descriptor.md). */
export interface ResourceDescriptor {
  readonly uri?: string;
  readonly digest?: Readonly<Record<string, string>>;
  readonly name?: string;
  readonly downloadLocation?: string;
  readonly mediaType?: string;
  readonly annotations?: Readonly<Record<string, unknown>>;
}

export interface Statement<P = unknown> {
  readonly _type: typeof STATEMENT_TYPE;
  readonly subject: readonly ResourceDescriptor[];
  readonly predicateType: string;
  readonly predicate: P;
}

/** digestSet turns an OCI digest (`sha256:<hex>`) into an in-toto DigestSet (`{sha256: hex}`). */
export function digestSet(d: Digest | string): Record<string, string> {
  const i = d.indexOf(':');
  return { [d.slice(0, i)]: d.slice(i + 1) };
}

/** imageSubject is the one subject of kiln's statements: the image manifest digest. */
export function imageSubject(name: string, digest: Digest): ResourceDescriptor {
  return { name, digest: digestSet(digest) };
}

/** statement assembles a Statement about one image. */
export function statement<P>(subject: ResourceDescriptor, predicateType: string, predicate: P): Statement<P> {
  return { _type: STATEMENT_TYPE, subject: [subject], predicateType, predicate };
}

/** statementBytes is the one serialisation of a statement (the DSSE payload). */
export function statementBytes(s: Statement): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(s));
}

/** imageUri names an image reference as a URI (`docker://registry/repo@digest`), as BuildKit does. */
export function imageUri(reference: string): string {
  return reference.startsWith('docker://') ? reference : `docker://${reference}`;
}

/** referenceOfUri is the image reference an imageUri names (other URIs unchanged). */
export function referenceOfUri(uri: string): string {
  return uri.startsWith('docker://') ? uri.slice('docker://'.length) : uri;
}
