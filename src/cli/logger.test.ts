import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Redactor } from '../internal/redactor.ts';
import { formatBytes, Logger } from './logger.ts';

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

const D = `sha256:${'a'.repeat(64)}`;

test('plain mode: phase headers, one line per finished blob, no escapes', () => {
  const out = new Collect();
  const log = new Logger({ out, level: 'info', color: false, bars: false });
  log.phase('exporting');
  const p = log.progress();
  p({ id: D, action: 'upload', state: 'running', done: 10, total: 100, label: 'layer 1/1' });
  p({ id: D, action: 'upload', state: 'done', done: 100, total: 100, label: 'layer 1/1' });
  p({ id: `sha256:${'b'.repeat(64)}`, action: 'upload', state: 'exists', done: 5, total: 5 });
  p.end();
  log.debug('hidden');
  assert.equal(
    out.text,
    `===> EXPORTING\nlayer 1/1 sha256:aaaaaaaaaaaa: pushed 100 B\nsha256:bbbbbbbbbbbb: already present\n`,
  );
  assert.doesNotMatch(out.text, /\x1b/);
});

test('quiet shows warnings and errors only; colour only when enabled', () => {
  const out = new Collect();
  const log = new Logger({ out, level: 'warn', color: false, bars: false });
  log.info('no');
  log.warn('careful');
  log.error('broken');
  assert.equal(out.text, 'Warning: careful\nERROR: broken\n');
  const c = new Collect();
  new Logger({ out: c, level: 'info', color: true, bars: false }).error('x');
  assert.match(c.text, /\x1b\[31mERROR:\x1b\[0m x/);
});

test('bars redraw in place on a terminal and end with final lines', () => {
  const out = new Collect();
  const log = new Logger({ out, level: 'info', color: false, bars: true });
  const p = log.progress();
  p({ id: D, action: 'download', state: 'running', done: 50, total: 100 });
  log.info('a line in between');
  p({ id: D, action: 'download', state: 'done', done: 100, total: 100 });
  p.end();
  const before = out.text;
  p.end();
  p({ id: D, action: 'download', state: 'done', done: 100, total: 100 });
  assert.equal(out.text, before, 'end() is final and idempotent');
  assert.match(out.text, /\[=+> *\] 50 B\/100 B/);
  assert.match(out.text, /\x1b\[1A\x1b\[0J/);
  assert.match(out.text, /pulled 100 B\n$/);
});

test('credentials never reach the output', () => {
  const redactor = new Redactor();
  redactor.add('s3cr3t-value');
  const out = new Collect();
  const log = new Logger({ out, level: 'debug', color: false, bars: false, redactor });
  log.info('login with s3cr3t-value and Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y');
  assert.doesNotMatch(out.text, /s3cr3t-value|eyJhbGci/);
});

test('formatBytes', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(300 * 1024 * 1024), '300.0 MiB');
});
