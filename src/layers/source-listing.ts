// Produced by the platform when it copies the app source; relied on by the lifecycle's detect memo.

/**
 * SourceListing identifies the copied source without reading its content, as git's index does:
 * `fingerprint` covers every copied entry's path, type, mode, size, link target, mtime, ctime and
 * inode. Any write, chmod or replacement of a file changes its ctime, so an equal fingerprint later
 * means the same content — except for a file written twice within one timestamp tick, the first
 * time just before it was copied ("racily clean" in git). Such files are listed in `recent` (those
 * changed less than RECENT_MS before the copy began): whoever relies on the fingerprint must also
 * compare their content.
 */
export interface SourceListing {
  readonly fingerprint: string;
  readonly recent: readonly string[];
}
