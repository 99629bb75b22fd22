import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { copyAppSource } from './app-source.ts';
import { parseProjectDescriptor } from './project-descriptor.ts';
import { projectMetadata, stripCredentials } from './project-metadata.ts';
import { sourceFilter } from './source-filter.ts';

let base: string;
let app: string;

async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(path.join(root, r));
      if (st.isDirectory()) {
        out.push(`${r}/`);
        await walk(r);
      } else if (st.isSymbolicLink()) out.push(`${r} -> ${await readlink(path.join(root, r))}`);
      else out.push(r);
    }
  };
  await walk('');
  return out;
}

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), 'kiln-app-'));
  app = path.join(base, 'app');
  const files: Record<string, string> = {
    'index.js': 'console.log(1)\n',
    'README.md': '# app\n',
    'package.json': '{}\n',
    'project.toml': '[_]\nschema-version="0.2"\n',
    'src/a.js': 'a\n',
    'src/docs/notes.md': 'n\n',
    'node_modules/x/index.js': 'x\n',
    'test/a.test.js': 't\n',
    'empty/.keep': '',
  };
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(app, rel)), { recursive: true });
    await writeFile(path.join(app, rel), body, { mode: rel === 'index.js' ? 0o755 : 0o644 });
  }
  await symlink('src/a.js', path.join(app, 'link.js'));
  await symlink('/etc/passwd', path.join(app, 'abs-link'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('copyAppSource()', () => {
  test('copies everything without a filter, symlinks as symlinks, modes kept', async () => {
    const dst = path.join(base, 'all');
    const r = await copyAppSource(app, dst, sourceFilter(undefined, undefined));
    assert.deepEqual(await tree(dst), await tree(app));
    assert.equal(r.files, 9);
    assert.equal(r.symlinks, 2);
    assert.equal((await lstat(path.join(dst, 'index.js'))).mode & 0o777, 0o755);
    assert.equal((await lstat(path.join(dst, 'README.md'))).mode & 0o777, 0o644);
    assert.equal(await readlink(path.join(dst, 'abs-link')), '/etc/passwd', 'never followed');
  });

  test('exclude drops matches, including whole directories', async () => {
    const dst = path.join(base, 'excl');
    const d = parseProjectDescriptor(
      '[_]\nschema-version="0.2"\n[io.buildpacks]\nexclude=["*.md", "node_modules/", "/test"]\n',
      '/p/project.toml',
    );
    await copyAppSource(app, dst, d.filter);
    assert.deepEqual(await tree(dst), [
      'abs-link -> /etc/passwd',
      'empty/',
      'empty/.keep',
      'index.js',
      'link.js -> src/a.js',
      'package.json',
      'project.toml',
      'src/',
      'src/a.js',
      'src/docs/',
    ]);
  });

  test('include keeps only matches and the directories that hold them', async () => {
    const dst = path.join(base, 'incl');
    await copyAppSource(app, dst, sourceFilter(['*.js', '*.json', '!*.test.js'], undefined));
    assert.deepEqual(await tree(dst), [
      'index.js',
      'link.js -> src/a.js',
      'node_modules/',
      'node_modules/x/',
      'node_modules/x/index.js',
      'package.json',
      'src/',
      'src/a.js',
    ]);
  });

  test('a destination inside the source is not copied into itself', async () => {
    const dst = path.join(app, '.kiln-workspace');
    try {
      await copyAppSource(app, dst, sourceFilter(undefined, undefined));
      assert.ok(!(await tree(dst)).some((p) => p.startsWith('.kiln-workspace')));
    } finally {
      await rm(dst, { recursive: true, force: true });
    }
  });

  test('sets the owner when asked (as root: chown to the build user)', {
    skip: process.getuid?.() !== 0,
  }, async () => {
    const dst = path.join(base, 'owned');
    await copyAppSource(app, dst, sourceFilter(undefined, undefined), { uid: 1000, gid: 1001 });
    for (const p of ['index.js', 'src', 'src/a.js', 'link.js']) {
      const st = await lstat(path.join(dst, p));
      assert.deepEqual([p, st.uid, st.gid], [p, 1000, 1001]);
    }
  });

  test('a missing app directory is a clear error', async () => {
    await assert.rejects(
      copyAppSource(path.join(base, 'nope'), path.join(base, 'x'), sourceFilter(undefined, undefined)),
      /app directory .*nope: does not exist/,
    );
  });

  test('the listing: the same for an untouched source, another after any change; fresh files are "recent"', async () => {
    const src = path.join(base, 'listed');
    await mkdir(path.join(src, 'lib'), { recursive: true });
    await writeFile(path.join(src, 'a.js'), 'a\n');
    await writeFile(path.join(src, 'lib', 'b.js'), 'b\n');
    const copy = async (filter = sourceFilter(undefined, undefined)) => {
      const dst = await mkdtemp(path.join(base, 'listed-copy-'));
      return (await copyAppSource(src, dst, filter)).listing;
    };
    const first = await copy();
    assert.deepEqual([...first.recent].sort(), ['a.js', 'lib/b.js'], 'files written a moment ago');
    assert.match(first.fingerprint, /^sha256:[0-9a-f]{64}$/);
    await new Promise((r) => setTimeout(r, 1100));
    const settled = await copy();
    assert.equal(settled.fingerprint, first.fingerprint, 'nothing changed');
    assert.deepEqual(settled.recent, []);
    // Same size, same mtime: the ctime still tells.
    const st = await lstat(path.join(src, 'a.js'));
    await writeFile(path.join(src, 'a.js'), 'A\n');
    await utimes(path.join(src, 'a.js'), st.atime, st.mtime);
    const rewritten = await copy();
    assert.notEqual(rewritten.fingerprint, first.fingerprint);
    assert.deepEqual(rewritten.recent, ['a.js']);
    // Only what is copied counts: an excluded file changes nothing.
    const filter = sourceFilter(undefined, ['*.log']);
    const withoutLog = await copy(filter);
    await writeFile(path.join(src, 'debug.log'), 'x\n');
    assert.equal((await copy(filter)).fingerprint, withoutLog.fingerprint);
    assert.notEqual((await copy()).fingerprint, withoutLog.fingerprint);
  });
});

describe('projectMetadata()', () => {
  test('project.toml version/source-url win (type "project")', async () => {
    const d = parseProjectDescriptor(
      '[_]\nschema-version="0.2"\nversion="1.0"\nsource-url="https://u:secret@git.example.com/x"\n',
      '/p/project.toml',
    );
    assert.deepEqual(await projectMetadata(d, app), {
      source: {
        type: 'project',
        version: { declared: '1.0' },
        metadata: { url: 'https://git.example.com/x' },
      },
    });
  });

  test('no descriptor data and no git gives {}', async () => {
    const d = parseProjectDescriptor('[_]\nschema-version="0.2"\n', '/p/project.toml');
    assert.deepEqual(await projectMetadata(d, app), {});
  });

  const hasGit = (() => {
    try {
      execFileSync('git', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  test('a git checkout gives commit, describe, refs and the origin url without credentials', {
    skip: !hasGit,
  }, async () => {
    const repo = path.join(base, 'repo');
    await mkdir(repo);
    const git = (...args: string[]) =>
      execFileSync(
        'git',
        ['-c', 'user.name=t', '-c', 'user.email=t@e', '-c', 'init.defaultBranch=main', ...args],
        {
          cwd: repo,
          encoding: 'utf8',
        },
      ).trim();
    git('init', '-q');
    await writeFile(path.join(repo, 'f'), 'x');
    git('add', 'f');
    git('commit', '-q', '-m', 'one');
    git('tag', 'v1.0.0');
    git('tag', '-a', 'v1.0.1', '-m', 'annotated');
    git('remote', 'add', 'origin', 'https://user:tok3n@git.example.com/app.git');
    const commit = git('rev-parse', 'HEAD');
    const d = parseProjectDescriptor('[_]\nschema-version="0.2"\n', '/p/project.toml');
    assert.deepEqual(await projectMetadata(d, repo), {
      source: {
        type: 'git',
        version: { commit, describe: 'v1.0.0' },
        metadata: {
          refs: ['main', 'v1.0.0', 'v1.0.1'],
          url: 'https://git.example.com/app.git',
          repository: 'https://git.example.com/app.git',
        },
      },
    });
    // Packed refs are read as well.
    git('pack-refs', '--all');
    const packed = await projectMetadata(d, repo);
    assert.deepEqual(packed.source!.metadata!.refs, ['main', 'v1.0.0', 'v1.0.1']);
    assert.equal(packed.source!.version!.commit, commit);
    assert.ok(!JSON.stringify(packed).includes('tok3n'));
  });

  test('the app dir is untrusted: a link in .git is never followed, a .git file pointing outside is ignored', {
    skip: !hasGit,
  }, async () => {
    const repo = path.join(base, 'hostile-repo');
    await mkdir(repo);
    execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo });
    await writeFile(path.join(repo, 'f'), 'x');
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@e', 'add', 'f'], { cwd: repo });
    execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@e', 'commit', '-q', '-m', 'one'], {
      cwd: repo,
    });
    // A host "config" with a remote the app points its .git/config at: never read.
    const canary = path.join(base, 'host-config');
    await writeFile(canary, '[remote "origin"]\n  url = https://host-canary.example/secret\n');
    await rm(path.join(repo, '.git', 'config'));
    await symlink(canary, path.join(repo, '.git', 'config'));
    const d = parseProjectDescriptor('[_]\nschema-version="0.2"\n', '/p/project.toml');
    const md = await projectMetadata(d, repo);
    assert.ok(!JSON.stringify(md).includes('host-canary'), JSON.stringify(md));
    // HEAD as a link: no git metadata at all (and no error).
    await rm(path.join(repo, '.git', 'HEAD'));
    await symlink(path.join(base, 'elsewhere-HEAD'), path.join(repo, '.git', 'HEAD'));
    assert.deepEqual(await projectMetadata(d, repo), {});
    // A `.git` file naming a git dir outside the app dir is not followed.
    const wt = path.join(base, 'worktree-app');
    await mkdir(wt);
    await writeFile(path.join(wt, '.git'), `gitdir: ${path.join(repo, '.git')}\n`);
    assert.deepEqual(await projectMetadata(d, wt), {});
  });

  test('stripCredentials()', () => {
    assert.equal(stripCredentials('https://a:b@h/x'), 'https://h/x');
    assert.equal(stripCredentials('git@github.com:a/b.git'), 'git@github.com:a/b.git');
  });
});

test('copied files keep their content', async () => {
  const dst = path.join(base, 'content');
  await copyAppSource(app, dst, sourceFilter(undefined, undefined));
  assert.equal(await readFile(path.join(dst, 'src/a.js'), 'utf8'), 'a\n');
});
