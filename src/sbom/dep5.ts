// Debian's short licence names (DEP-5 / copyright-format 1.0) mapped to SPDX identifiers. Only
// names whose meaning is unambiguous are mapped; anything else stays a named licence.
const SPDX: Record<string, string> = {
  'gpl-1': 'GPL-1.0-only',
  'gpl-1+': 'GPL-1.0-or-later',
  'gpl-2': 'GPL-2.0-only',
  'gpl-2+': 'GPL-2.0-or-later',
  'gpl-2.0': 'GPL-2.0-only',
  'gpl-2.0+': 'GPL-2.0-or-later',
  'gpl-3': 'GPL-3.0-only',
  'gpl-3+': 'GPL-3.0-or-later',
  'gpl-3.0': 'GPL-3.0-only',
  'gpl-3.0+': 'GPL-3.0-or-later',
  'lgpl-2': 'LGPL-2.0-only',
  'lgpl-2+': 'LGPL-2.0-or-later',
  'lgpl-2.1': 'LGPL-2.1-only',
  'lgpl-2.1+': 'LGPL-2.1-or-later',
  'lgpl-3': 'LGPL-3.0-only',
  'lgpl-3+': 'LGPL-3.0-or-later',
  'agpl-3': 'AGPL-3.0-only',
  'agpl-3+': 'AGPL-3.0-or-later',
  'gfdl-1.2': 'GFDL-1.2-only',
  'gfdl-1.2+': 'GFDL-1.2-or-later',
  'gfdl-1.3': 'GFDL-1.3-only',
  'gfdl-1.3+': 'GFDL-1.3-or-later',
  'apache-2.0': 'Apache-2.0',
  'apache-2': 'Apache-2.0',
  artistic: 'Artistic-1.0-Perl',
  'artistic-1.0': 'Artistic-1.0',
  'artistic-2.0': 'Artistic-2.0',
  'bsd-2-clause': 'BSD-2-Clause',
  'bsd-3-clause': 'BSD-3-Clause',
  'bsd-4-clause': 'BSD-4-Clause',
  'bsl-1.0': 'BSL-1.0',
  'cc0-1.0': 'CC0-1.0',
  cc0: 'CC0-1.0',
  'cc-by-3.0': 'CC-BY-3.0',
  'cc-by-4.0': 'CC-BY-4.0',
  'cc-by-sa-3.0': 'CC-BY-SA-3.0',
  'cc-by-sa-4.0': 'CC-BY-SA-4.0',
  curl: 'curl',
  expat: 'MIT',
  mit: 'MIT',
  isc: 'ISC',
  'mpl-1.1': 'MPL-1.1',
  'mpl-2.0': 'MPL-2.0',
  openssl: 'OpenSSL',
  'psf-2': 'PSF-2.0',
  'python-2.0': 'Python-2.0',
  sleepycat: 'Sleepycat',
  'unicode-dfs-2016': 'Unicode-DFS-2016',
  x11: 'X11',
  zlib: 'Zlib',
  fsfap: 'FSFAP',
  fsful: 'FSFUL',
  fsfullr: 'FSFULLR',
  'ofl-1.1': 'OFL-1.1',
  wtfpl: 'WTFPL',
  unlicense: 'Unlicense',
  '0bsd': '0BSD',
  libpng: 'Libpng',
  ntp: 'NTP',
  tcl: 'TCL',
  ruby: 'Ruby',
  ijg: 'IJG',
  'bzip2-1.0.6': 'bzip2-1.0.6',
};

// SPDX ids accepted as they are (the table's targets plus common ids of other ecosystems).
const IDS = new Set([...Object.values(SPDX), 'BlueOak-1.0.0', 'LGPL-2.0-or-later', 'EPL-2.0', 'EUPL-1.2']);

/**
 * spdxIdOf maps a licence name to an SPDX identifier, if it has one: Debian short names
 * ("GPL-2+", "Expat") through the table, SPDX ids ("MIT") as they are.
 */
export function spdxIdOf(name: string): string | undefined {
  const n = name.trim();
  return IDS.has(n) ? n : SPDX[n.toLowerCase()];
}
