import http from 'node:http';
import https from 'node:https';

/** What a snapline endpoint says of its data (GET /_snapline/store). */
export interface EndpointStore {
  /** Random, made with the data directory: the same across restarts, different for other data. */
  storeId: string;
  /** The data directory, absolute, as the endpoint's host sees it. */
  dataDir: string;
}

/**
 * What answered at a URL: a snapline endpoint that names its store, one that
 * does not (a serve older than the store route: `legacy` asks its stats
 * route), something else, or nothing at all (refused, timed out, TLS failed).
 */
export type EndpointAnswer =
  | { kind: 'store'; store: EndpointStore }
  | { kind: 'snapline' }
  | { kind: 'other' }
  | { kind: 'unreachable' };

export interface AskOptions {
  timeoutMs: number;
  /** TLS trust as the connection decides it. */
  tls?: { rejectUnauthorized?: boolean; ca?: string | string[] };
  /** When the store route is missing, ask the stats route whether a snapline endpoint answers at all. */
  legacy?: boolean;
}

/** Asks the endpoint at `url` which store it serves (see EndpointAnswer). Never throws. */
export async function askEndpoint(url: string, options: AskOptions): Promise<EndpointAnswer> {
  const answer = await getJson(`${url.replace(/\/+$/, '')}/_snapline/store`, options);
  if (answer === undefined) return { kind: 'unreachable' };
  if (answer.status === 200 && isEndpointStore(answer.body)) return { kind: 'store', store: answer.body };
  if (!options.legacy) return { kind: 'other' };
  const stats = await getJson(`${url.replace(/\/+$/, '')}/_snapline/stats`, options);
  return stats?.status === 200 ? { kind: 'snapline' } : { kind: 'other' };
}

function isEndpointStore(body: unknown): body is EndpointStore {
  const value = body as Partial<EndpointStore> | null;
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof value.storeId === 'string' &&
    /^[\w-]{1,64}$/.test(value.storeId) &&
    typeof value.dataDir === 'string' &&
    value.dataDir !== ''
  );
}

/** Bodies larger than this are not a store answer. */
const MAX_BODY_BYTES = 64 * 1024;

/** GET `url`: its status and JSON body (undefined body when it is not JSON), or undefined when nothing answered in time. */
function getJson(url: string, options: AskOptions): Promise<{ status: number; body: unknown } | undefined> {
  return new Promise((resolve) => {
    const tls = url.startsWith('https:') ? (options.tls ?? {}) : {};
    const request = (url.startsWith('https:') ? https : http).get(url, { timeout: options.timeoutMs, ...tls }, (response) => {
      const chunks: Buffer[] = [];
      let length = 0;
      response.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length > MAX_BODY_BYTES) response.destroy();
        else chunks.push(chunk);
      });
      // Cut short (too large, reset): the status without a body. After 'end' this settles nothing.
      const cut = () => resolve({ status: response.statusCode ?? 0, body: undefined });
      response.on('error', cut);
      response.on('close', cut);
      response.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = undefined;
        }
        resolve({ status: response.statusCode ?? 0, body });
      });
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(undefined));
  });
}
