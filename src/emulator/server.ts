import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { ArchiveServices } from './archive-services.js';
import { AwsError } from './protocol/aws-error.js';
import type { AccessKey } from './protocol/access-keys.js';
import { RequestAuthenticator, sendRefusal } from './protocol/auth.js';
import { ContainerServices, type TaskOptions } from './ecs/container-services.js';
import { EbsApi, matchEbsRoute, sendEbsError } from './ebs/ebs.js';
import { Ec2Api } from './ec2/ec2.js';
import { VolumeApi } from './ec2/volume-api.js';
import { VolumeService } from './ec2/volumes.js';
import { checkFaultSettings, FaultInjector, type FaultSettings } from './faults.js';
import { ClientGone, newRequestId, readBody, send, sendJson, type Exchange } from './protocol/http.js';
import { credentialScopeOf } from './protocol/sigv4.js';
import { SnapshotService, type EndpointLimits, type SnapshotClock } from './snapshots.js';
import { StatsRecorder, type EmulatorStats, type OperationStats } from './stats.js';
import type { TierDelays } from './tiers.js';
import { StsApi, STS_VERSION } from './sts/sts.js';
import { Catalog } from './store/catalog.js';
import { VolumeCatalog } from './store/volume-catalog.js';
import { ensureLayout, layoutOf, loadSecret, loadStoreId, lockDataDir } from './store/data-dir.js';
import { PackStore } from './store/packs.js';
import { TokenSigner } from './ebs/tokens.js';

export interface EndpointConfig {
  dataDir: string;
  host: string;
  port: number;
  faults: FaultSettings;
  /** The endpoint's clock (epoch ms): every state decision, and the SigV4 clock check, go by it. */
  now: () => number;
  /** Time scale and EC2 lag (see SnapshotClock). */
  clock: SnapshotClock;
  /** Whether EBS encryption by default starts enabled in every Region. */
  encryptionByDefault: boolean;
  limits: EndpointLimits;
  log: (line: string) => void;
  /** When given, every request (and every admin change) must be SigV4-signed with one of these keys. */
  auth?: readonly AccessKey[];
  /** When given, the endpoint speaks HTTPS with this key and certificate (PEM) instead of plain HTTP. */
  tls?: { key: string; cert: string };
  /** How long S3 restores and Glacier jobs of each tier take. */
  restoreDelays: TierDelays;
  jobDelays: TierDelays;
  /** How ECS tasks run (entrypoint, extra environment). */
  tasks?: TaskOptions;
  /** Running EC2 instances there must be at start, by Availability Zone (volumes attach to them); those a restart finds count. */
  instances?: Record<string, number>;
}

const DEFAULT_REGION = 'us-east-1';
const SWEEP_INTERVAL_MS = 200;
/** How long close() lets requests under way finish before dropping their connections. */
const CLOSE_GRACE_MS = 3000;

/**
 * The HTTP front of the endpoint: routes each request to a service by the
 * SigV4 credential scope (ebs, ec2, sts, s3, glacier, ecs, logs), or for
 * unsigned requests by path (/snapshots..., /-/vaults...), X-Amz-Target and
 * Action, plus the admin routes under /_snapline/.
 */
export class EndpointServer {
  readonly #config: EndpointConfig;
  readonly #server: Server | TlsServer;
  readonly #catalog: Catalog;
  readonly #packs: PackStore;
  readonly #faults: FaultInjector;
  readonly #stats = new StatsRecorder();
  readonly #snapshots: SnapshotService;
  readonly #ebs: EbsApi;
  readonly #ec2: Ec2Api;
  readonly #volumes: VolumeService;
  readonly #archives: ArchiveServices;
  readonly #containers: ContainerServices;
  readonly #release: () => void;
  readonly #auth: RequestAuthenticator | undefined;
  readonly #sts: StsApi;
  readonly #storeId: string;
  #sweeper: NodeJS.Timeout | undefined;
  #inFlight = 0;
  #onIdle: (() => void) | undefined;
  #closing: Promise<void> | undefined;
  #port = 0;

  private constructor(config: EndpointConfig) {
    this.#config = config;
    this.#auth = config.auth === undefined ? undefined : new RequestAuthenticator(config.auth, config.now);
    this.#sts = new StsApi({ now: config.now, ...(this.#auth === undefined ? {} : { sessions: this.#auth.sessions }) });
    const layout = layoutOf(config.dataDir);
    try {
      ensureLayout(layout);
      this.#release = lockDataDir(layout);
    } catch (err) {
      throw unusableDataDir(config.dataDir, err);
    }
    let catalog: Catalog | undefined;
    let packs: PackStore | undefined;
    try {
      catalog = new Catalog(layout.catalog);
      packs = new PackStore(layout.packs);
      this.#faults = new FaultInjector(config.faults, { now: config.now, timeScale: config.clock.timeScale });
      const tokens = new TokenSigner(loadSecret(layout));
      this.#storeId = loadStoreId(layout);
      this.#snapshots = new SnapshotService(catalog, packs, tokens, this.#faults, this.#stats, config.now, config.limits, config.clock, config.encryptionByDefault);
      this.#ebs = new EbsApi(this.#snapshots, this.#faults, this.#stats, config.now);
      this.#volumes = new VolumeService(this.#snapshots, new VolumeCatalog(catalog.database), config.now, config.clock.timeScale, config.clock.ec2LagMs);
      for (const [zone, count] of Object.entries(config.instances ?? {})) this.#volumes.ensureInstances(zone, count);
      this.#ec2 = new Ec2Api(this.#snapshots, new VolumeApi(this.#volumes), this.#faults);
      this.#archives = new ArchiveServices({ database: catalog.database, ...config, faults: this.#faults, stats: this.#stats });
      this.#containers = new ContainerServices({
        faults: this.#faults,
        log: config.log,
        endpointUrl: () => this.url,
        now: config.now,
        timeScale: config.clock.timeScale,
        ...(config.auth?.[0] === undefined ? {} : { credentials: config.auth[0] }),
        ...(config.tasks === undefined ? {} : { tasks: config.tasks }),
      });
    } catch (err) {
      catalog?.close();
      packs?.close();
      this.#release();
      throw unusableDataDir(config.dataDir, err);
    }
    this.#catalog = catalog;
    this.#packs = packs;
    const onRequest = (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req, res);
    this.#server = config.tls === undefined ? createServer({ noDelay: true }, onRequest) : createTlsServer({ noDelay: true, ...config.tls }, onRequest);
    // Longer than the SDK's idle sockets live, so a reused socket is not closed under a request.
    this.#server.keepAliveTimeout = 65_000;
    this.#server.headersTimeout = 66_000;
  }

  /** Opens the store under dataDir and starts listening. */
  static async start(config: EndpointConfig): Promise<EndpointServer> {
    const endpoint = new EndpointServer(config);
    try {
      await endpoint.#listen();
    } catch (err) {
      await endpoint.close();
      throw err;
    }
    return endpoint;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    const host = this.#config.host.includes(':') ? `[${this.#config.host}]` : this.#config.host;
    return `${this.#config.tls === undefined ? 'http' : 'https'}://${host}:${this.#port}`;
  }

  setFaults(faults: FaultSettings): void {
    this.#faults.replace(checkFaultSettings(faults));
  }

  stats(): EmulatorStats {
    return this.#stats.snapshot();
  }

  resetStats(): void {
    this.#stats.reset();
  }

  /** Makes `count` running EC2 instances in `zone` (RunInstances is not served); their ids. */
  createInstances(zone: string, count: number): string[] {
    return this.#volumes.createInstances(zone, count).map((i) => i.instanceId);
  }

  /** Makes as many running EC2 instances in `zone` as it lacks of `count`; the ids of all of the zone's. */
  ensureInstances(zone: string, count: number): string[] {
    return this.#volumes.ensureInstances(zone, count).map((i) => i.instanceId);
  }

  /**
   * Stops listening, lets requests under way finish (dropping them after a
   * grace period), waits for block writes, flushes the packs and closes the
   * store. Idempotent. Data stays on disk.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const reason = err.code === 'EADDRINUSE' ? 'the port is in use' : err.message;
        reject(
          new SnaplineError(ErrorCodes.CONFLICT, `cannot listen on ${this.#config.host}:${this.#config.port}: ${reason}`, {
            cause: err,
            hint: 'pick another --port, or 0 for a free one',
          }),
        );
      };
      this.#server.once('error', onError);
      this.#server.listen(this.#config.port, this.#config.host, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_INTERVAL_MS);
    this.#sweeper.unref();
  }

  #sweep(): void {
    try {
      this.#snapshots.sweep();
      this.#faults.pruneBuckets(this.#config.now());
    } catch (err) {
      this.#report('sweep', err);
    }
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#sweeper);
    if (this.#server.listening) {
      const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      this.#server.closeIdleConnections();
      if (this.#inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, CLOSE_GRACE_MS);
          this.#onIdle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.#server.closeAllConnections();
      await closed;
    }
    try {
      await this.#containers.close();
      await this.#snapshots.drain();
      await this.#packs.sync();
    } finally {
      this.#catalog.close();
      this.#packs.close();
      this.#release();
    }
  }

  #report(where: string, err: unknown): void {
    if (this.#closing !== undefined) return;
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    this.#config.log(`snapline endpoint: internal error in ${where}: ${text}`);
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.#inFlight += 1;
    res.on('close', () => {
      this.#inFlight -= 1;
      if (this.#inFlight === 0) this.#onIdle?.();
    });
    // The endpoint's clock, as AWS's Date header gives the service's: the SDKs correct their clock skew from it.
    res.setHeader('date', new Date(this.#config.now()).toUTCString());
    // A client that goes away mid-request makes the request emit 'error'; the handlers see it as ClientGone.
    req.on('error', () => {});
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    this.#dispatch(req, res, path, query).catch((err: unknown) => {
      if (err instanceof ClientGone) return;
      this.#report(`${req.method} ${path}`, err);
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { 'content-type': 'application/json', 'x-amzn-errortype': 'InternalServerException' });
        res.end(JSON.stringify({ Message: 'An internal error has occurred.' }));
      } else if (!res.writableEnded) {
        res.destroy();
      }
    });
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse, path: string, query: string): Promise<void> {
    if (path.startsWith('/_snapline/')) {
      const refused = req.method === 'GET' ? undefined : await this.#auth?.check(req, path, query, 'admin', false);
      if (refused !== undefined) return sendRefusal(this.#adminExchange(req, res, path, query), 'admin', refused);
      return this.#admin(req, res, path, query);
    }
    const scope = credentialScopeOf(req.headers);
    const region = scope?.region ?? DEFAULT_REGION;
    const exchangeFor = (operation: string): Exchange => {
      const stats = this.#stats.operation(operation);
      stats.requests += 1;
      return { req, res, path, query, region, requestId: newRequestId(), stats };
    };
    const service = scope?.service ?? guessService(req, path, query);
    if (this.#auth !== undefined) {
      const unsignedPayload = service === 'ebs' && matchEbsRoute(req.method ?? '', path)?.operation === 'PutSnapshotBlock';
      const refused = await this.#auth.check(req, path, query, service, unsignedPayload);
      if (refused !== undefined) return sendRefusal(exchangeFor('AuthRefused'), service, refused);
    }

    if (service === 'ebs') {
      const route = matchEbsRoute(req.method ?? '', path);
      if (route === undefined) {
        sendEbsError(exchangeFor('EbsUnknownOperation'), new AwsError(404, 'UnknownOperationException', `No EBS direct operation matches ${req.method} ${path}.`));
        return;
      }
      return this.#ebs.handle(route, exchangeFor(route.operation));
    }
    if (service === 's3' || service === 'glacier') return this.#archives.handle(service, req, path, query, exchangeFor);
    if (service === 'ec2' || service === 'sts' || service === 'query') {
      const counted: OperationStats = { requests: 0, errors: 0, bytesIn: 0, bytesOut: 0 };
      const body = await readBody(req, counted);
      const params = new URLSearchParams(query);
      for (const [key, value] of new URLSearchParams(body.toString('utf8'))) params.append(key, value);
      const action = params.get('Action') ?? '';
      const isSts = service === 'sts' || (service === 'query' && params.get('Version') === STS_VERSION);
      const exchange = exchangeFor(action === '' ? (isSts ? 'StsMissingAction' : 'Ec2MissingAction') : action);
      exchange.stats.bytesIn += counted.bytesIn;
      return isSts ? this.#sts.handle(action, params, exchange) : this.#ec2.handle(action, params, exchange);
    }
    if (service === 'ecs' || service === 'logs') {
      const operation = ContainerServices.operationOf(service, req.headers);
      return this.#containers.handle(service, operation, exchangeFor(operation || `${service}MissingTarget`));
    }
    const exchange = exchangeFor('UnknownService');
    sendJson(exchange, 400, { Message: `This endpoint does not serve the service '${service}'.` }, { 'x-amzn-errortype': 'UnknownServiceException' });
  }

  /**
   * GET /_snapline/stats, POST /_snapline/stats/reset, GET|POST /_snapline/faults, and GET /_snapline/store
   * (the store id of the data directory and its absolute path), POST /_snapline/instances (JSON
   * {availabilityZone, count}: makes running EC2 instances, answers their ids) and
   * GET /_snapline/volumes/ID?offset=&length= (the bytes of a volume, default its first MiB).
   * Not counted in the stats.
   */
  async #admin(req: IncomingMessage, res: ServerResponse, path: string, query: string): Promise<void> {
    const exchange = this.#adminExchange(req, res, path, query);
    const route = `${req.method} ${path}`;
    if (route === 'GET /_snapline/stats') return sendJson(exchange, 200, this.stats());
    if (route === 'POST /_snapline/stats/reset') {
      await readBody(req, exchange.stats);
      this.resetStats();
      return send(exchange, 204, {});
    }
    if (route === 'GET /_snapline/store') return sendJson(exchange, 200, { storeId: this.#storeId, dataDir: resolve(this.#config.dataDir) });
    if (route === 'POST /_snapline/instances') return this.#adminInstances(exchange);
    if (req.method === 'GET' && path.startsWith('/_snapline/volumes/')) return this.#adminVolume(exchange, path.slice('/_snapline/volumes/'.length), query);
    if (route === 'GET /_snapline/faults') return sendJson(exchange, 200, this.#faults.settings);
    if (route === 'POST /_snapline/faults') {
      const body = await readBody(req, exchange.stats);
      let settings: FaultSettings;
      try {
        settings = checkFaultSettings(JSON.parse(body.toString('utf8') || '{}'));
      } catch (err) {
        const message = err instanceof SnaplineError ? err.message : 'the body must be JSON fault settings';
        return sendJson(exchange, 400, { error: message });
      }
      this.#faults.replace(settings);
      return sendJson(exchange, 200, this.#faults.settings);
    }
    sendJson(exchange, 404, { error: `no admin route ${route}` });
  }

  async #adminInstances(exchange: Exchange): Promise<void> {
    const body = await readBody(exchange.req, exchange.stats);
    let request: { availabilityZone?: unknown; count?: unknown };
    try {
      request = JSON.parse(body.toString('utf8') || '{}') as typeof request;
    } catch {
      return sendJson(exchange, 400, { error: 'the body must be JSON {"availabilityZone": "...", "count": N}' });
    }
    const count = request.count ?? 1;
    if (typeof request.availabilityZone !== 'string' || typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 100) {
      return sendJson(exchange, 400, { error: 'availabilityZone must be a zone such as us-east-1a and count a whole number from 1 to 100' });
    }
    try {
      return sendJson(exchange, 200, { instanceIds: this.createInstances(request.availabilityZone, count) });
    } catch (err) {
      if (err instanceof AwsError) return sendJson(exchange, 400, { error: err.message });
      throw err;
    }
  }

  async #adminVolume(exchange: Exchange, volumeId: string, query: string): Promise<void> {
    const params = new URLSearchParams(query);
    const offset = Number(params.get('offset') ?? 0);
    const length = Number(params.get('length') ?? 1024 * 1024);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || length > 256 * 1024 * 1024) {
      return sendJson(exchange, 400, { error: 'offset must be 0 or more and length 0 to 268435456 bytes' });
    }
    try {
      const data = await this.#volumes.read(volumeId, offset, length);
      return send(exchange, 200, { 'content-type': 'application/octet-stream' }, data);
    } catch (err) {
      if (err instanceof AwsError) return sendJson(exchange, err.code === 'IncorrectState' ? 409 : 404, { error: err.message });
      throw err;
    }
  }

  #adminExchange(req: IncomingMessage, res: ServerResponse, path: string, query: string): Exchange {
    return { req, res, path, query, region: DEFAULT_REGION, requestId: newRequestId(), stats: { requests: 0, errors: 0, bytesIn: 0, bytesOut: 0 } };
  }
}

function unusableDataDir(dataDir: string, err: unknown): SnaplineError {
  if (err instanceof SnaplineError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new SnaplineError(ErrorCodes.IO_FAILED, `cannot open the endpoint data directory ${dataDir}: ${reason}`, { cause: err });
}

/** The service of an unsigned request: EBS and Glacier by path, ECS and Logs by X-Amz-Target, the query protocols by form body or Action, else S3. */
function guessService(req: IncomingMessage, path: string, query: string): string {
  if (path === '/snapshots' || path.startsWith('/snapshots/')) return 'ebs';
  if (ArchiveServices.isGlacierPath(path)) return 'glacier';
  const jsonService = ContainerServices.serviceOf(req.headers);
  if (jsonService !== undefined) return jsonService;
  const form = (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
  if ((req.method === 'POST' && form) || /(^|&)Action=/.test(query)) return 'query';
  return 's3';
}

