// Terminal escape injection: ids, labels, run image names and error text come from images,
// builders, buildpacks and registries, and kiln prints them. Escape sequences (OSC 52 clipboard
// writes, window titles, screen clears, cursor moves), carriage returns and bidi overrides are
// shown as visible `\xNN` escapes; only colour (SGR) sequences in log lines are kept, as
// buildpacks colour their output.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Logger } from '../../src/cli/logger.ts';
import { Layout } from '../../src/layout/layout.ts';
import { runMain } from '../helpers/cli.ts';
import { appImage, runImage } from '../helpers/cnb-images.ts';

const HOSTILE = 'run\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b[1A\rFAKE\u202egnp.exe\x9b31m';
// Any control character but newline (and tab), C1 controls and bidi overrides.
const RAW = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

describe('terminal escapes in untrusted text', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kiln-escapes-'));
    const run = await runImage({ patch: '1' });
    const app = await appImage({
      run,
      runImageName: `reg.example.com/${HOSTILE}:1`,
      runImageReference: 'reg.example.com/run@sha256:0',
    });
    await (await Layout.init(path.join(dir, 'layout'))).writeImage(app, 'app');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('kiln inspect shows a hostile run image name with its escapes made visible', async () => {
    const r = await runMain(['inspect', `oci:${dir}/layout:app`], { HOME: dir, KILN_HOME: dir });
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.out, RAW);
    assert.match(r.out, /run\\x1b\]52;c;cHduZWQ=\\x07\\x1b\[2J\\x1b\[1A\\x0dFAKE\\u202egnp\.exe\\x9b31m:1/);
  });

  test('log lines keep colour but neutralise every other sequence, in every level', () => {
    const chunks: string[] = [];
    const out = new Writable({
      write(c, _e, cb) {
        chunks.push(String(c));
        cb();
      },
    });
    const log = new Logger({ out, level: 'debug', color: false, bars: false });
    log.info(`  \x1b[32mok\x1b[0m ${HOSTILE}`);
    log.warn(HOSTILE);
    log.error(HOSTILE);
    log.debug(HOSTILE);
    const text = chunks.join('');
    assert.equal(text.split('\n').length, 5, 'one line each');
    assert.ok(text.startsWith('  \x1b[32mok\x1b[0m run\\x1b]52'), text);
    assert.doesNotMatch(text.replaceAll('\x1b[32m', '').replaceAll('\x1b[0m', ''), RAW);
  });
});
