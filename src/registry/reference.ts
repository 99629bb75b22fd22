import { type Digest, isDigest } from '../oci/digest.ts';
import { oneLine } from '../oci/schema.ts';

// Image references as Docker's distribution/reference grammar defines them, with Docker Hub
// normalisation: `alpine` → `index.docker.io/library/alpine:latest`.

/** The Docker Hub registry as references and credential stores name it. */
export const DOCKER_HUB = 'index.docker.io';
/** The host that actually serves Docker Hub's registry API. */
export const DOCKER_HUB_API = 'registry-1.docker.io';

/** A repository in a registry: `registry/repository`, without tag or digest. */
export interface Repository {
  /** Registry host and optional port, normalised (`index.docker.io` for Docker Hub). */
  readonly registry: string;
  /** Repository path (`library/alpine`). */
  readonly repository: string;
}

/** A parsed image reference. At least one of `tag` and `digest` is set after parsing. */
export interface Reference extends Repository {
  readonly tag: string | undefined;
  readonly digest: Digest | undefined;
}

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const PATH_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DOMAIN_RE =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/;

/**
 * parseReference parses `[registry/]repository[:tag][@digest]`, defaulting the registry to Docker
 * Hub and the tag to `latest` when neither tag nor digest is given. A leading `docker://` is
 * accepted. Throws a TypeError naming the reference and what is wrong.
 *
 * @example parseReference('localhost:5000/app:v1') // { registry: 'localhost:5000', repository: 'app', tag: 'v1' }
 */
export function parseReference(input: string): Reference {
  const fail = (why: string): never => {
    throw new TypeError(oneLine(`invalid image reference "${input}": ${why}`));
  };
  let s = input.startsWith('docker://') ? input.slice('docker://'.length) : input;
  if (s === '') fail('empty');
  if (s.length > 1024) fail('longer than 1024 characters');
  let digest: Digest | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    const d = s.slice(at + 1);
    if (!isDigest(d)) fail(`digest "${d}" is not sha256:<64 hex>`);
    digest = d as Digest;
    s = s.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = s.slice(colon + 1);
    s = s.slice(0, colon);
    if (!TAG_RE.test(tag)) fail(`tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  let registry = DOCKER_HUB;
  let repository = s;
  const slash = s.indexOf('/');
  if (slash > 0) {
    const first = s.slice(0, slash);
    if (
      first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first !== first.toLowerCase()
    ) {
      if (!DOMAIN_RE.test(first)) fail(`registry "${first}" is not a host[:port]`);
      registry = normaliseRegistry(first);
      repository = s.slice(slash + 1);
    }
  }
  if (!PATH_RE.test(repository))
    fail(`repository "${repository}" must be lowercase components of [a-z0-9._-] separated by "/"`);
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository, tag, digest };
}

/** normaliseRegistry maps Docker Hub's aliases to `index.docker.io`; other hosts are kept. */
export function normaliseRegistry(host: string): string {
  const h = host.toLowerCase();
  if (h === 'docker.io' || h === 'index.docker.io' || h === DOCKER_HUB_API) return DOCKER_HUB;
  return host;
}

/** apiHost is the host that serves the registry API for `registry`. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}

/** repositoryString renders `registry/repository` (Docker Hub as `docker.io`). */
export function repositoryString(r: Repository): string {
  return `${r.registry === DOCKER_HUB ? 'docker.io' : r.registry}/${r.repository}`;
}

/** referenceString renders a reference in full: `registry/repository[:tag][@digest]`. */
export function referenceString(r: Reference): string {
  return repositoryString(r) + (r.tag !== undefined ? `:${r.tag}` : '') + (r.digest ? `@${r.digest}` : '');
}

/** identifier is what names the manifest in API paths: the digest when known, else the tag. */
export function identifier(r: Reference): string {
  return r.digest ?? r.tag ?? 'latest';
}

/** isLoopback tells whether a registry host is this machine (spoken to over plain HTTP by default). */
export function isLoopback(registry: string): boolean {
  const host = registry.startsWith('[')
    ? registry.slice(0, registry.indexOf(']') + 1)
    : registry.split(':')[0]!;
  return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]';
}
