import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CA_CERT_FILE } from '../../config/local-endpoint.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { createCertificateAuthority, issueServerCertificate, type KeyAndCertificate } from './x509.js';

/** The CA's key in the local endpoint's data directory, beside its certificate (CA_CERT_FILE). */
export const CA_KEY_FILE = 'ca-key.pem';
const CA_NAME = 'snapline local endpoint CA';
const CA_DAYS = 3650;
const SERVER_DAYS = 398;
/** A CA closer than this to its end is replaced. */
const RENEW_BEFORE_MS = 30 * 86_400_000;
/** Names every local server certificate carries, besides the address it listens on. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

export interface LocalTls {
  /** The server's key and certificate, for the endpoint. */
  key: string;
  cert: string;
  /** Where the CA certificate is, for clients to trust (verify: PATH). */
  caPath: string;
}

/**
 * TLS material for `snapline serve --tls`: the CA kept in `dataDir`
 * (ca.pem and ca-key.pem, owner-only, made on first use and reused until a
 * month before it ends, so clients keep trusting it across restarts) and a
 * server certificate for loopback and `host`, made fresh on every call and
 * kept in memory only. Throws SnaplineError IO_FAILED when the files cannot
 * be written.
 */
export function localEndpointTls(dataDir: string, host: string, now: Date = new Date()): LocalTls {
  const caPath = join(dataDir, CA_CERT_FILE);
  const keyPath = join(dataDir, CA_KEY_FILE);
  let ca = readCa(caPath, keyPath, now);
  if (ca === undefined) {
    ca = createCertificateAuthority({ commonName: CA_NAME, days: CA_DAYS, now });
    try {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      writePrivate(keyPath, ca.key);
      writePrivate(caPath, ca.cert);
    } catch (err) {
      throw new SnaplineError(ErrorCodes.IO_FAILED, `cannot write the local endpoint's CA into ${dataDir}: ${(err as Error).message}`, { cause: err });
    }
  }
  const hosts = [...new Set([...LOOPBACK_NAMES, host])];
  const server = issueServerCertificate(ca, { commonName: host, hosts, days: SERVER_DAYS, now });
  return { key: server.key, cert: server.cert, caPath };
}

/** The CA kept in the data directory, when both files are there, match and it is not about to end. */
function readCa(caPath: string, keyPath: string, now: Date): KeyAndCertificate | undefined {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(caPath, 'utf8');
    key = readFileSync(keyPath, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = new X509Certificate(cert);
    if (!parsed.ca || new Date(parsed.validTo).getTime() - RENEW_BEFORE_MS < now.getTime()) return undefined;
    if (!parsed.checkPrivateKey(createPrivateKey(key))) return undefined;
    return { key, cert };
  } catch {
    return undefined;
  }
}

/** Written whole (temporary file, then rename) and readable by the owner only. */
function writePrivate(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  renameSync(temporary, path);
}
