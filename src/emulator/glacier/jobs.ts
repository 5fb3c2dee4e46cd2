import { randomBytes } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import type { FaultInjector } from '../faults.js';
import { checkDescription, GlacierErrors, glacierTime, limitOf, MIB, vaultArn } from './shared.js';
import { rangeTreeHash } from './tree-hash.js';
import { headerOf, readBody, send, sendJson, type Exchange } from '../protocol/http.js';
import { ACCOUNT_ID } from '../snapshots.js';
import type { StatsRecorder } from '../stats.js';
import type { BlobFiles } from '../store/blob-files.js';
import type { GlacierArchive, GlacierCatalog, GlacierJob } from '../store/glacier-catalog.js';
import { isTier, type Tier, type TierDelays } from '../tiers.js';

/** Job output can be fetched for 24 hours after the job completes; then the job is gone. */
const OUTPUT_LIFETIME_MS = 24 * 60 * 60 * 1000;
const STATUS_CODES = ['InProgress', 'Succeeded', 'Failed'];

type JobOperation = 'InitiateJob' | 'ListJobs' | 'DescribeJob' | 'GetJobOutput';

/** The fixed part of a job's description, as stored at initiation. */
interface JobDescription extends Record<string, unknown> {
  Action: 'ArchiveRetrieval' | 'InventoryRetrieval';
  JobDescription: string | null;
  SNSTopic: string | null;
  Tier: Tier;
  ArchiveId?: string;
  ArchiveSizeInBytes?: number;
  ArchiveSHA256TreeHash?: string;
  RetrievalByteRange?: string;
  SHA256TreeHash?: string | null;
  InventorySizeInBytes?: number;
  InventoryRetrievalParameters?: Record<string, unknown>;
}

/**
 * Glacier jobs: archive retrieval (whole or a megabyte-aligned byte range)
 * and inventory retrieval (JSON or CSV, taken when the job is initiated).
 * A job stays InProgress for its tier's delay, then ends Succeeded, or
 * Failed when the jobFailureRate fault picks it; its output is refused
 * before Succeeded and gone 24 hours after completion. Status is computed
 * from the stored times, so jobs carry on across restarts.
 */
export class GlacierJobs {
  constructor(
    private readonly catalog: GlacierCatalog,
    private readonly blobs: BlobFiles,
    private readonly faults: FaultInjector,
    private readonly stats: StatsRecorder,
    private readonly now: () => number,
    private readonly delays: TierDelays,
  ) {}

  /** The vault exists (checked by the caller). */
  async handle(operation: JobOperation, vault: string, jobId: string, query: Map<string, string>, exchange: Exchange): Promise<void> {
    switch (operation) {
      case 'InitiateJob':
        return this.#initiate(vault, exchange);
      case 'ListJobs':
        return this.#list(vault, query, exchange);
      case 'DescribeJob':
        return sendJson(exchange, 200, this.#describe(this.#job(vault, jobId), exchange.region));
      case 'GetJobOutput':
        return this.#output(vault, jobId, exchange);
    }
  }

  async #initiate(vault: string, exchange: Exchange): Promise<void> {
    const body = await readBody(exchange.req, exchange.stats);
    let parameters: Record<string, unknown>;
    try {
      parameters = JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      throw GlacierErrors.invalid('The job parameters are not valid JSON.');
    }
    if (parameters === null || typeof parameters !== 'object' || Array.isArray(parameters)) throw GlacierErrors.invalid('The job parameters must be a JSON object.');
    const tier = parameters.Tier ?? 'Standard';
    if (!isTier(tier)) throw GlacierErrors.invalid(`Invalid tier: ${String(tier)}. Use Expedited, Standard or Bulk.`);
    const jobDescription = optionalString(parameters.Description, 'Description');
    const common = {
      JobDescription: jobDescription === undefined ? null : checkDescription(jobDescription, 'job'),
      SNSTopic: optionalString(parameters.SNSTopic, 'SNSTopic') ?? null,
      Tier: tier,
    };
    const createdAt = this.now();
    let description: JobDescription;
    let inventory: string | null = null;
    switch (parameters.Type) {
      case 'archive-retrieval':
        description = { Action: 'ArchiveRetrieval', ...common, ...this.#retrieval(vault, parameters) };
        break;
      case 'inventory-retrieval': {
        const taken = this.#inventory(vault, parameters, createdAt, exchange.region);
        inventory = taken.output;
        description = { Action: 'InventoryRetrieval', ...common, InventoryRetrievalParameters: taken.parameters, InventorySizeInBytes: Buffer.byteLength(taken.output) };
        break;
      }
      case undefined:
        throw GlacierErrors.missing('The job parameters must give a Type.');
      default:
        throw GlacierErrors.invalid(`Invalid job type: ${String(parameters.Type)}. This endpoint serves archive-retrieval and inventory-retrieval.`);
    }
    const failed = this.faults.jobFails();
    if (failed) this.stats.fault('jobFailures');
    const jobId = randomBytes(69).toString('base64url');
    this.catalog.createJob({ jobId, vault, createdAt, completesAt: createdAt + this.delays[tier], outcome: failed ? 'Failed' : 'Succeeded', description, inventory });
    send(exchange, 202, { location: `/${ACCOUNT_ID}/vaults/${vault}/jobs/${jobId}`, 'x-amz-job-id': jobId, 'x-amzn-requestid': exchange.requestId });
  }

  /** The archive-retrieval fields: the archive, its size and tree hash, the byte range and that range's tree hash when aligned. */
  #retrieval(vault: string, parameters: Record<string, unknown>): Partial<JobDescription> {
    const archiveId = optionalString(parameters.ArchiveId, 'ArchiveId');
    if (archiveId === undefined) throw GlacierErrors.missing('An archive-retrieval job needs an ArchiveId.');
    const archive = this.catalog.archive(archiveId);
    if (archive === undefined || archive.vault !== vault) throw GlacierErrors.notFound(`Archive not found: ${archiveId}`);
    const rangeText = optionalString(parameters.RetrievalByteRange, 'RetrievalByteRange');
    const range = rangeText === undefined ? { start: 0, end: archive.size - 1 } : retrievalRange(rangeText, archive.size);
    return {
      ArchiveId: archiveId,
      ArchiveSizeInBytes: archive.size,
      ArchiveSHA256TreeHash: archive.treeHash,
      RetrievalByteRange: `${range.start}-${range.end}`,
      SHA256TreeHash: rangeTreeHash(this.catalog.files(archive.content), range.start, range.end) ?? null,
    };
  }

  /** The inventory output (archives created in [StartDate, EndDate), after Marker, at most Limit) and the parameters DescribeJob echoes. */
  #inventory(vault: string, parameters: Record<string, unknown>, at: number, region: string): { output: string; parameters: Record<string, unknown> } {
    const format = parameters.Format ?? 'JSON';
    if (format !== 'JSON' && format !== 'CSV') throw GlacierErrors.invalid(`Invalid inventory format: ${String(format)}. Use JSON or CSV.`);
    const given = (parameters.InventoryRetrievalParameters ?? {}) as Record<string, unknown>;
    const startDate = dateParameter(given.StartDate, 'StartDate');
    const endDate = dateParameter(given.EndDate, 'EndDate');
    const limitText = optionalString(given.Limit, 'Limit');
    const limit = limitText === undefined ? Infinity : Number(limitText);
    if (limitText !== undefined && (!/^\d+$/.test(limitText) || limit < 1)) throw GlacierErrors.invalid(`Invalid inventory Limit: ${limitText}`);
    const marker = optionalString(given.Marker, 'Marker');

    let archives = this.catalog.archivesOf(vault).filter((a) => (startDate === undefined || a.createdAt >= startDate) && (endDate === undefined || a.createdAt < endDate));
    if (marker !== undefined) {
      const from = archives.findIndex((a) => a.archiveId === marker);
      if (from < 0) throw GlacierErrors.invalid(`Invalid inventory Marker: ${marker}`);
      archives = archives.slice(from);
    }
    const page = archives.slice(0, limit);
    const next = archives[page.length]?.archiveId ?? null;
    const output = format === 'JSON' ? inventoryJson(page, vaultArn(region, vault), at) : inventoryCsv(page);
    const echoed: Record<string, unknown> = { Format: format, StartDate: given.StartDate ?? null, EndDate: given.EndDate ?? null, Limit: limitText ?? null, Marker: next };
    return { output, parameters: echoed };
  }

  #list(vault: string, query: Map<string, string>, exchange: Exchange): void {
    const limit = limitOf(query, 50, 50);
    const completed = query.get('completed');
    const statusCode = query.get('statuscode');
    if (completed !== undefined && completed !== 'true' && completed !== 'false') throw GlacierErrors.invalid(`Invalid completed: ${completed}`);
    if (statusCode !== undefined && !STATUS_CODES.includes(statusCode)) throw GlacierErrors.invalid(`Invalid statuscode: ${statusCode}`);
    const at = this.now();
    const jobs = this.catalog
      .jobsOf(vault)
      .filter((job) => !expired(job, at))
      .map((job) => this.#describe(job, exchange.region))
      .filter((job) => (completed === undefined || String(job.Completed) === completed) && (statusCode === undefined || job.StatusCode === statusCode));
    const marker = query.get('marker');
    const from = marker === undefined ? 0 : jobs.findIndex((job) => job.JobId === marker);
    if (from < 0) throw GlacierErrors.invalid(`Invalid marker: ${marker}`);
    sendJson(exchange, 200, { JobList: jobs.slice(from, from + limit), Marker: (jobs[from + limit]?.JobId as string | undefined) ?? null });
  }

  async #output(vault: string, jobId: string, exchange: Exchange): Promise<void> {
    const job = this.#job(vault, jobId);
    if (statusOf(job, this.now()) !== 'Succeeded') throw GlacierErrors.invalid(`The job is not currently available for download: ${jobId}`);
    const description = job.description as JobDescription;
    const inventory = job.inventory === null ? undefined : Buffer.from(job.inventory);
    let archive: GlacierArchive | undefined;
    let offset = 0;
    let total: number;
    if (inventory !== undefined) {
      total = inventory.length;
    } else {
      archive = this.catalog.archive(description.ArchiveId!);
      if (archive === undefined) throw GlacierErrors.notFound(`Archive not found: ${description.ArchiveId!}`);
      const [start, end] = description.RetrievalByteRange!.split('-').map(Number) as [number, number];
      offset = start;
      total = end - start + 1;
    }
    const rangeText = headerOf(exchange.req.headers, 'range');
    const range = rangeText === undefined ? { start: 0, end: total - 1 } : outputRange(rangeText, total);
    const headers: OutgoingHttpHeaders = {
      'x-amzn-requestid': exchange.requestId,
      'accept-ranges': 'bytes',
      'content-length': range.end - range.start + 1,
    };
    if (rangeText !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end}/${total}`;
    const status = rangeText === undefined ? 200 : 206;
    if (inventory !== undefined) {
      headers['content-type'] = description.InventoryRetrievalParameters?.Format === 'CSV' ? 'text/csv' : 'application/json';
      return send(exchange, status, headers, inventory.subarray(range.start, range.end + 1));
    }
    const files = this.catalog.files(archive!.content);
    const treeHash = rangeTreeHash(files, offset + range.start, offset + range.end);
    headers['content-type'] = 'application/octet-stream';
    if (archive!.description !== '') headers['x-amz-archive-description'] = archive!.description;
    if (treeHash !== undefined) headers['x-amz-sha256-tree-hash'] = treeHash;
    exchange.res.writeHead(status, headers);
    try {
      exchange.stats.bytesOut += await this.blobs.copyRange(files, offset + range.start, offset + range.end, exchange.res);
    } catch {
      exchange.stats.errors += 1;
      exchange.res.destroy();
    }
  }

  /** A job of this vault whose output has not expired; ResourceNotFoundException otherwise. */
  #job(vault: string, jobId: string): GlacierJob {
    const job = this.catalog.job(jobId);
    if (job === undefined || job.vault !== vault || expired(job, this.now())) throw GlacierErrors.notFound(`The job ID was not found: ${jobId}`);
    return job;
  }

  /** DescribeJob's answer: the stored fields with status, completion and the vault's ARN. */
  #describe(job: GlacierJob, region: string): Record<string, unknown> {
    const status = statusOf(job, this.now());
    const done = status !== 'InProgress';
    const description = job.description as JobDescription;
    return {
      JobId: job.jobId,
      VaultARN: vaultArn(region, job.vault),
      CreationDate: glacierTime(job.createdAt),
      ...description,
      ...(description.Action === 'InventoryRetrieval' && !done ? { InventorySizeInBytes: null } : {}),
      Completed: done,
      StatusCode: status,
      StatusMessage: status === 'Failed' ? 'The job failed (injected fault: jobFailureRate).' : status,
      CompletionDate: done ? glacierTime(job.completesAt) : null,
    };
  }
}

function statusOf(job: GlacierJob, now: number): 'InProgress' | 'Succeeded' | 'Failed' {
  return now < job.completesAt ? 'InProgress' : job.outcome;
}

function expired(job: GlacierJob, now: number): boolean {
  return now >= job.completesAt + OUTPUT_LIFETIME_MS;
}

function optionalString(value: unknown, name: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string') throw GlacierErrors.invalid(`Invalid ${name}: it must be a string.`);
  return value;
}

function dateParameter(value: unknown, name: string): number | undefined {
  const text = optionalString(value, name);
  if (text === undefined) return undefined;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw GlacierErrors.invalid(`Invalid ${name}: ${text} is not an ISO 8601 date.`);
  return ms;
}

/** RetrievalByteRange "A-B": A on a megabyte boundary, B+1 on one too or B the archive's last byte. */
function retrievalRange(text: string, size: number): { start: number; end: number } {
  const match = /^(\d+)-(\d+)$/.exec(text.trim());
  const start = Number(match?.[1]);
  const end = Number(match?.[2]);
  if (match === null || start > end || end >= size || start % MIB !== 0 || ((end + 1) % MIB !== 0 && end !== size - 1)) {
    throw GlacierErrors.invalid(
      `Invalid RetrievalByteRange: ${text}. It must be StartByte-EndByte within the archive of ${size} bytes, StartByte divisible by 1 MiB and EndByte + 1 divisible by 1 MiB or the archive's last byte.`,
    );
  }
  return { start, end };
}

/** A `bytes=A-B` or `bytes=A-` Range of job output. */
function outputRange(text: string, total: number): { start: number; end: number } {
  const match = /^bytes=(\d+)-(\d*)$/.exec(text.trim());
  const start = Number(match?.[1]);
  const end = match?.[2] === '' ? total - 1 : Number(match?.[2]);
  if (match === null || start > end || end >= total) throw GlacierErrors.invalid(`Invalid Range: ${text} (the output has ${total} bytes).`);
  return { start, end };
}

function inventoryJson(archives: GlacierArchive[], vaultArnText: string, at: number): string {
  return JSON.stringify({
    VaultARN: vaultArnText,
    InventoryDate: glacierTime(at),
    ArchiveList: archives.map((archive) => ({
      ArchiveId: archive.archiveId,
      ArchiveDescription: archive.description,
      CreationDate: glacierTime(archive.createdAt),
      Size: archive.size,
      SHA256TreeHash: archive.treeHash,
    })),
  });
}

function inventoryCsv(archives: GlacierArchive[]): string {
  const quote = (text: string) => `"${text.replace(/"/g, '""')}"`;
  const rows = archives.map((a) => [a.archiveId, quote(a.description), glacierTime(a.createdAt), a.size, a.treeHash].join(','));
  return ['ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash', ...rows].join('\n') + '\n';
}
