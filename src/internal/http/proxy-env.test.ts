import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NoProxy, ProxySettings } from './proxy-env.ts';

const bypass = (noProxy: string, url: string) => new NoProxy(noProxy).bypasses(new URL(url));

describe('NO_PROXY matching', () => {
  test('empty lists bypass nothing; * bypasses everything (also among other entries)', () => {
    assert.equal(bypass('', 'https://registry.example/v2/'), false);
    assert.equal(bypass(' , ', 'https://registry.example/v2/'), false);
    assert.equal(bypass('*', 'https://registry.example/v2/'), true);
    assert.equal(bypass('none.invalid, *', 'http://10.1.2.3:5000/'), true);
    assert.equal(bypass('*:443', 'http://registry.example/'), false);
    assert.equal(bypass('*:443', 'https://registry.example/'), true);
  });

  test('a domain matches itself and every name under it, with or without a leading dot', () => {
    for (const entry of ['example.com', '.example.com', 'EXAMPLE.com.']) {
      assert.equal(bypass(entry, 'https://example.com/'), true, entry);
      assert.equal(bypass(entry, 'https://registry.example.com/'), true, entry);
      assert.equal(bypass(entry, 'https://a.b.Example.COM./'), true, entry);
      assert.equal(bypass(entry, 'https://badexample.com/'), false, entry);
      assert.equal(bypass(entry, 'https://example.com.evil.net/'), false, entry);
    }
  });

  test('*.domain matches only names under it', () => {
    assert.equal(bypass('*.example.com', 'https://example.com/'), false);
    assert.equal(bypass('*.example.com', 'https://r.example.com/'), true);
  });

  test('a port limits an entry to that port (default ports count)', () => {
    assert.equal(bypass('example.com:5000', 'http://example.com:5000/'), true);
    assert.equal(bypass('example.com:5000', 'http://example.com:5001/'), false);
    assert.equal(bypass('example.com:443', 'https://example.com/'), true);
    assert.equal(bypass('example.com:80', 'https://example.com/'), false);
    assert.equal(bypass('10.0.0.1:8443', 'https://10.0.0.1:8443/'), true);
    assert.equal(bypass('[::1]:5000', 'http://[::1]:5000/'), true);
    assert.equal(bypass('[::1]:5000', 'http://[::1]:5001/'), false);
  });

  test('IP addresses match IP hosts exactly; CIDR ranges match addresses inside them', () => {
    assert.equal(bypass('10.1.2.3', 'http://10.1.2.3/'), true);
    assert.equal(bypass('10.1.2.3', 'http://10.1.2.4/'), false);
    assert.equal(bypass('10.0.0.0/8', 'http://10.200.3.4:5000/'), true);
    assert.equal(bypass('10.0.0.0/8', 'http://11.0.0.1/'), false);
    assert.equal(bypass('192.168.4.0/22', 'http://192.168.7.255/'), true);
    assert.equal(bypass('192.168.4.0/22', 'http://192.168.8.0/'), false);
    assert.equal(bypass('0.0.0.0/0', 'http://8.8.8.8/'), true);
    assert.equal(bypass('::1', 'http://[::1]:5000/'), true);
    assert.equal(bypass('fd00::/8', 'http://[fd12:3456::1]/'), true);
    assert.equal(bypass('fd00::/8', 'http://[fe80::1]/'), false);
    // Ranges are about addresses, never about names, and names never match IP entries.
    assert.equal(bypass('10.0.0.0/8', 'http://10.example.com/'), false);
    assert.equal(bypass('127.0.0.1', 'http://localhost/'), false);
  });

  test('malformed entries are ignored, the rest still apply', () => {
    assert.equal(bypass('10.0.0.0/33,10.0.0.0/x,/8,example.com', 'http://10.0.0.1/'), false);
    assert.equal(bypass('10.0.0.0/33,10.0.0.0/x,/8,example.com', 'http://example.com/'), true);
  });

  test('entries may be separated by commas and spaces', () => {
    assert.equal(bypass('a.example  b.example,\tc.example', 'http://b.example/'), true);
    assert.equal(bypass('a.example  b.example,\tc.example', 'http://c.example/'), true);
  });
});

describe('proxy choice', () => {
  test('HTTPS_PROXY for https, HTTP_PROXY for http; upper case wins; no scheme means http', () => {
    const p = new ProxySettings({
      HTTPS_PROXY: 'proxy.corp:3128',
      https_proxy: 'http://ignored:1',
      http_proxy: 'http://plain.corp:8080',
    });
    assert.equal(p.proxyFor(new URL('https://r.example/'))?.href, 'http://proxy.corp:3128/');
    assert.equal(p.proxyFor(new URL('http://r.example/'))?.href, 'http://plain.corp:8080/');
  });

  test('NO_PROXY in either case sends matching hosts direct; no variable, no proxy', () => {
    const p = new ProxySettings({ HTTPS_PROXY: 'http://p:1', no_proxy: '.internal,10.0.0.0/8' });
    assert.equal(p.proxyFor(new URL('https://r.internal/')), undefined);
    assert.equal(p.proxyFor(new URL('https://10.9.9.9/')), undefined);
    assert.equal(p.proxyFor(new URL('https://r.example/'))?.host, 'p:1');
    assert.equal(p.proxyFor(new URL('http://r.example/')), undefined);
    assert.equal(new ProxySettings({}).proxyFor(new URL('https://r.example/')), undefined);
    assert.equal(new ProxySettings({ HTTPS_PROXY: '  ' }).proxyFor(new URL('https://r.example/')), undefined);
  });

  test('a bad proxy value fails naming the variable, never echoing it', () => {
    assert.throws(
      () => new ProxySettings({ HTTPS_PROXY: 'ftp://u:secret-pw@p:21' }),
      (e: Error) =>
        /^HTTPS_PROXY: proxy scheme ftp: is not supported/.test(e.message) && !e.message.includes('secret'),
    );
    assert.throws(() => new ProxySettings({ HTTP_PROXY: 'http://[bad' }), /HTTP_PROXY: not a proxy URL/);
  });
});
