import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * Just enough X.509 to give the local endpoint HTTPS: a CA and server
 * certificates signed by it (ECDSA P-256 with SHA-256), written in DER by
 * hand because Node's crypto can parse certificates but not make them.
 * Follows RFC 5280: v3, positive random serials, subject and authority key
 * identifiers, critical basicConstraints and keyUsage.
 */

export interface KeyAndCertificate {
  /** PKCS#8 PEM. */
  key: string;
  /** PEM. */
  cert: string;
}

export interface CertificateOptions {
  commonName: string;
  /** Validity in days from `now` (backdated an hour for clock skew). */
  days: number;
  now?: Date;
}

export interface ServerCertificateOptions extends CertificateOptions {
  /** DNS names and IP addresses (v4 or v6) the certificate is good for. */
  hosts: string[];
}

const OID = {
  commonName: '2.5.4.3',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};

/** A self-signed CA certificate that may sign end-entity certificates only (pathLen 0). */
export function createCertificateAuthority(options: CertificateOptions): KeyAndCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyId = keyIdentifier(publicKey);
  const extensions = [
    extension(OID.basicConstraints, true, sequence(boolean(true), integer(Buffer.from([0])))),
    // keyCertSign (bit 5) and cRLSign (bit 6).
    extension(OID.keyUsage, true, bitString(Buffer.from([0x06]), 1)),
    extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
  ];
  const cert = signCertificate({ subject: options.commonName, issuer: options.commonName, publicKey, signingKey: privateKey, extensions, ...options });
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), cert };
}

/** A server certificate for `hosts`, signed by `ca` (made by createCertificateAuthority). */
export function issueServerCertificate(ca: KeyAndCertificate, options: ServerCertificateOptions): KeyAndCertificate {
  if (options.hosts.length === 0) throw new Error('a server certificate needs at least one host');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingKey = createPrivateKey(ca.key);
  const names = options.hosts.map((host) => {
    const family = isIP(host);
    if (family === 4) return tlv(0x87, Buffer.from(host.split('.').map(Number)));
    if (family === 6) return tlv(0x87, ipv6Bytes(host));
    return tlv(0x82, Buffer.from(host, 'ascii'));
  });
  const extensions = [
    extension(OID.basicConstraints, true, sequence()),
    // digitalSignature (bit 0): what an ECDSA TLS server key does.
    extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7)),
    extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
    extension(OID.subjectAltName, false, sequence(...names)),
    extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(publicKey))),
    extension(OID.authorityKeyIdentifier, false, sequence(tlv(0x80, keyIdentifier(signingKey)))),
  ];
  const issuer = /^CN=(.+)$/.exec(new X509Certificate(ca.cert).subject)?.[1];
  if (issuer === undefined) throw new Error('the CA certificate must name only a common name');
  const cert = signCertificate({ subject: options.commonName, issuer, publicKey, signingKey, extensions, ...options });
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), cert };
}

interface SignInput extends CertificateOptions {
  subject: string;
  issuer: string;
  publicKey: KeyObject;
  signingKey: KeyObject;
  extensions: Buffer[];
}

function signCertificate(input: SignInput): string {
  const now = input.now ?? new Date();
  const notBefore = new Date(now.getTime() - 3600_000);
  const notAfter = new Date(now.getTime() + input.days * 86_400_000);
  const serial = randomBytes(16);
  // Positive and never starting with a zero byte, so it stays 16 bytes long.
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const algorithm = sequence(oid(OID.ecdsaWithSha256));
  const tbs = sequence(
    tlv(0xa0, integer(Buffer.from([2]))),
    integer(serial),
    algorithm,
    name(input.issuer),
    sequence(time(notBefore), time(notAfter)),
    name(input.subject),
    input.publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, sequence(...input.extensions)),
  );
  const signature = sign('sha256', tbs, { key: input.signingKey, dsaEncoding: 'der' });
  const der = sequence(tbs, algorithm, bitString(signature, 0));
  const base64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${base64}${base64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
function keyIdentifier(key: KeyObject): Buffer {
  const spki = (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
  // For P-256 the SPKI is a fixed 26-byte header followed by the BIT STRING's unused-bits byte and the point.
  const bits = spki.subarray(spki.length - 65);
  return createHash('sha1').update(bits).digest();
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

function name(commonName: string): Buffer {
  return sequence(set(sequence(oid(OID.commonName), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const parts = (text: string) => (text === '' ? [] : text.split(':'));
  const left = parts(head);
  const right = address.includes('::') ? parts(tail) : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return Buffer.from(groups.flatMap((group) => [parseInt(group, 16) >> 8, parseInt(group, 16) & 0xff]));
}

// ---- DER ----

function tlv(tag: number, content: Buffer): Buffer {
  const length = content.length;
  let header: Buffer;
  if (length < 0x80) {
    header = Buffer.from([tag, length]);
  } else {
    const bytes: number[] = [];
    for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

function sequence(...items: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(items));
}

function set(...items: Buffer[]): Buffer {
  return tlv(0x31, Buffer.concat(items));
}

function boolean(value: boolean): Buffer {
  return tlv(0x01, Buffer.from([value ? 0xff : 0x00]));
}

/** A non-negative integer from big-endian bytes. */
function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && bytes[start + 1]! < 0x80) start += 1;
  const trimmed = bytes.subarray(start);
  return tlv(0x02, trimmed[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function octetString(content: Buffer): Buffer {
  return tlv(0x04, content);
}

function bitString(content: Buffer, unusedBits: number): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), content]));
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const bytes = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift((n & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}
