import assert from 'node:assert/strict';
import type { BigIntStats } from 'node:fs';
import { test } from 'node:test';
import { appExportFilter, isVcsOrJunk, keptByInclude } from './app-export-filter.ts';

const st = {} as BigIntStats;

test('VCS metadata and editor junk are recognised by name at any depth; app files are not', () => {
  for (const n of ['.git', '.hg', '.svn', '.bzr', '_darcs', 'CVS', '.fslckout', '_FOSSIL_', '.jj'])
    assert.ok(isVcsOrJunk(n), n);
  for (const n of ['.idea', '.vscode', '.DS_Store', '.app.js.swp', '.#app.js', '#app.js#', 'app.js~'])
    assert.ok(isVcsOrJunk(n), n);
  for (const n of ['.gitignore', '.gitattributes', 'git', 'app.js', '.profile', '~', 'cvs', '.env'])
    assert.ok(!isVcsOrJunk(n), n);
  const keep = appExportFilter();
  assert.equal(keep('.git', st), false);
  assert.equal(keep('vendor/lib/.git', st), false);
  assert.equal(keep('src/.hg', st), false);
  assert.equal(keep('src/app.js', st), true);
  assert.equal(keep('.gitignore', st), true);
});

test('only an include pattern naming the entry keeps it in the image', () => {
  assert.deepEqual(keptByInclude(undefined), []);
  assert.deepEqual(keptByInclude(['*', '.*', 'src/**']), []);
  assert.deepEqual(keptByInclude(['.git', 'app.js']), ['.git']);
  assert.deepEqual(keptByInclude(['/.git/', 'vendor/.hg/**']), ['.git', '.hg']);
  const keep = appExportFilter(['.git']);
  assert.equal(keep('.git', st), true);
  assert.equal(keep('.hg', st), false);
});
