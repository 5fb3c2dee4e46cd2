import type Database from 'better-sqlite3';
import type { IncomingMessage } from 'node:http';
import type { FaultInjector } from './faults.js';
import { GlacierApi, matchGlacierRoute } from './glacier/glacier.js';
import { GlacierJobs } from './glacier/jobs.js';
import { headerOf, type Exchange } from './protocol/http.js';
import { S3Api } from './s3/s3.js';
import { matchS3Route } from './s3/routes.js';
import type { StatsRecorder } from './stats.js';
import { BlobFiles } from './store/blob-files.js';
import { Contents } from './store/contents.js';
import { GlacierCatalog } from './store/glacier-catalog.js';
import { S3Catalog } from './store/s3-catalog.js';
import type { TierDelays } from './tiers.js';

export interface ArchiveServicesConfig {
  /** The endpoint catalog's database, which holds the S3 and Glacier tables too. */
  database: Database.Database;
  dataDir: string;
  faults: FaultInjector;
  stats: StatsRecorder;
  now: () => number;
  restoreDelays: TierDelays;
  jobDelays: TierDelays;
}

/**
 * The archive tier of the endpoint: S3 (REST-XML) and Glacier (REST-JSON),
 * sharing the body files under `<dataDir>/blobs` and the catalog. Opening
 * removes body files that no catalog row names (left by a crash mid-upload).
 */
export class ArchiveServices {
  readonly #s3: S3Api;
  readonly #glacier: GlacierApi;

  constructor(config: ArchiveServicesConfig) {
    const blobs = new BlobFiles(config.dataDir);
    blobs.collectGarbage(new Contents(config.database).allNames());
    this.#s3 = new S3Api({ catalog: new S3Catalog(config.database), blobs, now: config.now, restoreDelays: config.restoreDelays });
    const glacier = new GlacierCatalog(config.database);
    const jobs = new GlacierJobs(glacier, blobs, config.faults, config.stats, config.now, config.jobDelays);
    this.#glacier = new GlacierApi(glacier, blobs, jobs, config.now);
  }

  /** Unsigned requests to /-/vaults/... or /ACCOUNT/vaults/... are Glacier's. */
  static isGlacierPath(path: string): boolean {
    return /^\/(-|\d{12})\/vaults(\/|$)/.test(path);
  }

  /**
   * Answers an S3 or Glacier request. `exchangeFor` makes the exchange of
   * the matched operation, named as in the API (Glacier's prefixed
   * `glacier:`, since both APIs have ListParts and the like).
   */
  handle(service: 's3' | 'glacier', req: IncomingMessage, path: string, query: string, exchangeFor: (operation: string) => Exchange): Promise<void> {
    if (service === 's3') {
      const route = matchS3Route(req.method ?? 'GET', path, query, headerOf(req.headers, 'host'), req.headers['x-amz-copy-source'] !== undefined);
      return this.#s3.handle(route, exchangeFor(route.operation));
    }
    const route = matchGlacierRoute(req.method ?? 'GET', path);
    return this.#glacier.handle(route, exchangeFor(`glacier:${route?.operation ?? 'UnknownOperation'}`));
  }
}
