import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CA_CERT_FILE } from '../../config/local-endpoint.js';
import { CA_KEY_FILE, localEndpointTls } from './local-tls.js';
import { createCertificateAuthority, issueServerCertificate } from './x509.js';

const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-x509-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('x509', () => {
  const now = new Date(Date.UTC(2031, 5, 1, 12));
  const ca = createCertificateAuthority({ commonName: 'snapline test CA', days: 30, now });
  const server = issueServerCertificate(ca, { commonName: 'localhost', hosts: ['localhost', '127.0.0.1', '::1', 'backup.example'], days: 7, now });

  it('makes a self-signed CA certificate', () => {
    const cert = new X509Certificate(ca.cert);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toBe('CN=snapline test CA');
    expect(cert.issuer).toBe('CN=snapline test CA');
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(new Date(cert.validFrom).getTime()).toBe(now.getTime() - 3600_000);
    expect(new Date(cert.validTo).getTime()).toBe(now.getTime() + 30 * 86_400_000);
    expect(/^[0-7]/.test(cert.serialNumber)).toBe(true);
  });

  it('issues a server certificate the CA signed, for every host given', () => {
    const cert = new X509Certificate(server.cert);
    const authority = new X509Certificate(ca.cert);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(authority)).toBe(true);
    expect(cert.verify(authority.publicKey)).toBe(true);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkHost('backup.example')).toBe('backup.example');
    expect(cert.checkHost('other.example')).toBeUndefined();
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('::1')).toBe('::1');
    expect(cert.checkIP('127.0.0.2')).toBeUndefined();
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.checkPrivateKey(createPrivateKey(server.key))).toBe(true);
  });

  it('writes GeneralizedTime from 2050 on', () => {
    const late = createCertificateAuthority({ commonName: 'late', days: 400, now: new Date(Date.UTC(2049, 11, 1)) });
    expect(new Date(new X509Certificate(late.cert).validTo).getUTCFullYear()).toBe(2051);
  });

  it.skipIf(!haveOpenssl)('passes openssl verify in strict X.509 mode', () => {
    const fresh = createCertificateAuthority({ commonName: 'strict CA', days: 2 });
    const leaf = issueServerCertificate(fresh, { commonName: '127.0.0.1', hosts: ['127.0.0.1'], days: 1 });
    writeFileSync(join(dir, 'ca.pem'), fresh.cert);
    writeFileSync(join(dir, 'leaf.pem'), leaf.cert);
    const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(out.trim()).toBe(`${join(dir, 'leaf.pem')}: OK`);
  });
});

describe('localEndpointTls', () => {
  it('makes the CA once, owner-only, and a fresh server certificate every time', () => {
    const first = localEndpointTls(dir, '127.0.0.1');
    expect(first.caPath).toBe(join(dir, CA_CERT_FILE));
    expect(statSync(join(dir, CA_CERT_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, CA_KEY_FILE)).mode & 0o777).toBe(0o600);
    const caPem = (): string => readFileSync(first.caPath, 'utf8');
    const ca = caPem();
    const second = localEndpointTls(dir, '::1');
    expect(caPem()).toBe(ca);
    expect(second.cert).not.toBe(first.cert);
    const leaf = new X509Certificate(second.cert);
    expect(leaf.checkIssued(new X509Certificate(ca))).toBe(true);
    expect(leaf.checkIP('::1')).toBe('::1');
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(leaf.checkHost('localhost')).toBe('localhost');
  });

  it('replaces a CA that ends within a month, or whose key does not match', () => {
    const before = localEndpointTls(dir, '127.0.0.1', new Date(Date.UTC(2030, 0, 1)));
    const ca = (): string => readFileSync(before.caPath, 'utf8');
    const original = ca();
    localEndpointTls(dir, '127.0.0.1', new Date(Date.UTC(2039, 11, 15)));
    const renewed = ca();
    expect(renewed).not.toBe(original);
    writeFileSync(join(dir, CA_KEY_FILE), createCertificateAuthority({ commonName: 'x', days: 1 }).key);
    localEndpointTls(dir, '127.0.0.1');
    expect(ca()).not.toBe(renewed);
  });
});
