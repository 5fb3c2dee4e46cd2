import { isAbsolute, resolve } from 'node:path';
import { ErrorCodes, SnaplineError } from '../../errors.js';

/** The IANA port of NBD. */
export const DEFAULT_NBD_PORT = 10809;

export type NbdTransport = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; socket: string };

/** TLS settings of an nbds:// or nbds+unix:// URL. */
export interface NbdTls {
  /** A folder holding ca-cert.pem (the CA to trust) and, for client certificates, client-cert.pem and client-key.pem. */
  certificates?: string;
  /** The name the server's certificate must carry; default the URL's host (none for a Unix socket). */
  hostname?: string;
  /** Check the server's certificate (default true). */
  verifyPeer: boolean;
}

/** Where an NBD export is and how to reach it, from an NBD URL. */
export interface NbdAddress {
  /**
   * The export's name for people and the index: the URL in a canonical form
   * (socket path made absolute, default port written out), without TLS settings.
   */
  url: string;
  exportName: string;
  transport: NbdTransport;
  /** Undefined: no TLS (a server that requires it is refused). */
  tls: NbdTls | undefined;
}

const SCHEMES: Record<string, { tls: boolean; unix: boolean }> = {
  nbd: { tls: false, unix: false },
  nbds: { tls: true, unix: false },
  'nbd+unix': { tls: false, unix: true },
  'nbds+unix': { tls: true, unix: true },
};

const TLS_PARAMETERS = new Set(['tls-certificates', 'tls-hostname', 'tls-verify-peer']);

/** Whether `spec` is meant as an NBD URL (nbd://, nbds://, nbd+unix://, ...) rather than a path. */
export function isNbdUrl(spec: string): boolean {
  return /^nbds?(\+[a-z0-9]+)?:\/\//i.test(spec);
}

/**
 * Parses `nbd://HOST[:PORT]/EXPORT`, `nbds://...` (TLS required),
 * `nbd+unix:///EXPORT?socket=PATH` and `nbds+unix://...`. The export name is
 * the path without its leading slash, percent-decoded (empty: the server's
 * default export). A relative socket path is taken from `cwd`. Anything the
 * client does not understand is refused with INVALID_ARGUMENT naming it.
 */
export function parseNbdUrl(spec: string, cwd = process.cwd()): NbdAddress {
  const bad = (why: string, hint?: string) =>
    new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `NBD URL ${spec}: ${why}`, {
      hint: hint ?? 'write nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH (nbds:// and nbds+unix:// for TLS)',
      details: { url: spec },
    });
  const match = /^([a-z0-9+]+):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/i.exec(spec);
  if (match === null) throw bad('not a URL of the form scheme://authority/export');
  const [, rawScheme = '', authority = '', rawPath = '', rawQuery, fragment] = match;
  const scheme = rawScheme.toLowerCase();
  const kind = SCHEMES[scheme];
  if (kind === undefined) throw bad(`scheme ${rawScheme}:// is not supported`);
  if (fragment !== undefined) throw bad('a URL fragment (#...) has no meaning here');

  const exportName = decode(rawPath.replace(/^\//, ''), 'the export name', bad);
  if (exportName.includes('\0')) throw bad('the export name contains a NUL character');
  if (Buffer.byteLength(exportName) > 4096) throw bad('the export name is longer than 4096 bytes');

  const params = new Map<string, string>();
  for (const part of rawQuery === undefined || rawQuery === '' ? [] : rawQuery.split('&')) {
    const eq = part.indexOf('=');
    const key = decode(eq === -1 ? part : part.slice(0, eq), 'a query parameter', bad);
    const value = decode(eq === -1 ? '' : part.slice(eq + 1), `query parameter ${key}`, bad);
    if (params.has(key)) throw bad(`query parameter ${key} is given twice`);
    params.set(key, value);
  }
  for (const key of params.keys()) {
    if (key === 'socket' && kind.unix) continue;
    if (TLS_PARAMETERS.has(key)) {
      if (!kind.tls) throw bad(`${key} is a TLS setting, but ${scheme}:// does not use TLS`, `use ${scheme.replace('nbd', 'nbds')}:// for TLS`);
      continue;
    }
    throw bad(`unknown query parameter ${key}`);
  }

  let transport: NbdTransport;
  if (kind.unix) {
    if (authority !== '') throw bad(`a Unix socket URL has no host (found "${authority}")`, 'write nbd+unix:///EXPORT?socket=PATH, with three slashes');
    const socket = params.get('socket');
    if (socket === undefined || socket === '') throw bad('the socket=PATH query parameter is missing');
    if (socket.includes('\0')) throw bad('abstract socket names are not supported');
    transport = { kind: 'unix', socket: isAbsolute(socket) ? socket : resolve(cwd, socket) };
  } else {
    if (authority.includes('@')) throw bad('user names (for TLS pre-shared keys) are not supported');
    const hostPort = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d*))?$/i.exec(authority);
    if (hostPort === null) throw bad(authority === '' ? 'the host is missing' : `"${authority}" is not HOST or HOST:PORT`);
    const [, rawHost = '', rawPort] = hostPort;
    const port = rawPort === undefined || rawPort === '' ? DEFAULT_NBD_PORT : Number(rawPort);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`port ${rawPort} is not a port number (1 to 65535)`);
    const host = decode(rawHost, 'the host', bad).replace(/^\[(.*)\]$/, '$1');
    transport = { kind: 'tcp', host, port };
  }

  let tls: NbdTls | undefined;
  if (kind.tls) {
    const verify = params.get('tls-verify-peer');
    if (verify !== undefined && verify !== '0' && verify !== '1') throw bad(`tls-verify-peer must be 0 or 1, not "${verify}"`);
    const certificates = params.get('tls-certificates');
    tls = {
      certificates: certificates === undefined || certificates === '' ? undefined : isAbsolute(certificates) ? certificates : resolve(cwd, certificates),
      hostname: params.get('tls-hostname') || undefined,
      verifyPeer: verify !== '0',
    };
  }
  return { url: canonicalUrl(scheme, exportName, transport), exportName, transport, tls };
}

function decode(text: string, what: string, bad: (why: string) => SnaplineError): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw bad(`${what} is not valid percent-encoding`);
  }
}

/** Percent-encodes a path or export name, keeping slashes readable. */
function encode(text: string): string {
  return encodeURIComponent(text).replace(/%2F/gi, '/');
}

function canonicalUrl(scheme: string, exportName: string, transport: NbdTransport): string {
  if (transport.kind === 'unix') return `${scheme}:///${encode(exportName)}?socket=${encode(transport.socket)}`;
  const host = transport.host.includes(':') ? `[${transport.host}]` : transport.host;
  return `${scheme}://${host}:${transport.port}/${encode(exportName)}`;
}

/**
 * The default volume name of an NBD source: its export name, made a valid
 * volume name. An export without a name (the server's default export) has
 * none: INVALID_ARGUMENT asks for --volume.
 */
export function nbdVolumeName(address: NbdAddress): string {
  if (address.exportName === '') {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `NBD source ${address.url} names no export, so it gives no volume name: pass --volume`, {
      details: { url: address.url },
    });
  }
  return address.exportName.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 128);
}
