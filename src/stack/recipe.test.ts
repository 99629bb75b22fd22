import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseStackConfig } from './config.ts';
import { recipeOf } from './create.ts';
import { StackLabel, stackLabels } from './image.ts';
import { parseLock } from './lock.ts';

const STACK = `id = "x"\n[distro]\nname = "debian"\nversion = "12"\n[archive]\narch = "amd64"\nsuites = ["bookworm"]\n[user]\nname = "cnb"\nuid = 1000\ngid = 1000\n[run]\nname = "r"\npackages = ["libc6"]\n[build]\nname = "b"\npackages = ["bash"]\n`;
const pkg = (n: string) =>
  `name = "${n}"\nversion = "1"\narch = "amd64"\nsource = "${n}"\nsuite = "bookworm"\nfilename = "pool/main/${n}.deb"\nsize = 1\nsha256 = "${'0'.repeat(64)}"\n`;
const LOCK = `version = 1\ninputs = "sha256:${'1'.repeat(64)}"\n\n[[run.packages]]\n${pkg('libc6')}\n[[build.packages]]\n${pkg('bash')}`;
const EPOCH = 315532801;

describe('stack recipes', () => {
  test('a stack file without flavours makes the images it made before flavours existed', () => {
    // Pinned: the recipes (and so the labels and image digests) kiln gave this stack file before
    // run-image flavours and the run user existed. Upgrading kiln must not move a base image.
    const config = parseStackConfig(STACK, 's.toml');
    const lock = parseLock(LOCK, 'l');
    const run = recipeOf(config, lock, 'run', EPOCH);
    assert.equal(run, 'sha256:3672b77ec196aa7eabbd64f3bf85ba9da6944ad7ed135aff3787f774555e5800');
    assert.equal(
      recipeOf(config, lock, 'build', EPOCH),
      'sha256:e30ba17d08c04602ab778375b6cbe4b04e18443cf01069a7ab8ff42de93a7ea5',
    );
    const labels = stackLabels(config, 'run', { epoch: EPOCH, lockDigest: 'l', recipe: run, packages: 1 });
    assert.equal(labels[StackLabel.Flavour], undefined);
  });

  test('flavours change the recipe and label every run image, the default one too', () => {
    const config = parseStackConfig(
      `${STACK}[run.flavours.shell]\nname = "s"\npackages = ["dash"]\n`,
      's.toml',
    );
    const plain = parseStackConfig(STACK, 's.toml');
    const lock = parseLock(LOCK, 'l');
    assert.notEqual(recipeOf(config, lock, 'run', EPOCH), recipeOf(plain, lock, 'run', EPOCH));
    assert.notEqual(recipeOf(config, lock, 'run', EPOCH, 'shell'), recipeOf(config, lock, 'run', EPOCH));
    const extra = { epoch: EPOCH, lockDigest: 'l', recipe: 'r', packages: 1 };
    assert.equal(stackLabels(config, 'run', extra)[StackLabel.Flavour], 'default');
    assert.equal(stackLabels(config, 'run', { ...extra, flavour: 'shell' })[StackLabel.Flavour], 'shell');
    assert.equal(stackLabels(config, 'build', extra)[StackLabel.Flavour], undefined);
  });
});
