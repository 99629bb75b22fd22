/**
 * Advice shown with network failures. A module of its own so that buildpacks which only explain
 * failures (npm-install) do not load the HTTP client, and with it TLS, at start.
 */

/** TRUST_HINT is the advice shown for certificate failures (kiln's flags; other platforms have their own). */
export const TRUST_HINT = 'certificate not trusted: pass --ca-certs or trust the host bundle';
