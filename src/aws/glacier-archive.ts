import { createHash } from 'node:crypto';
import type { GlacierClient, GlacierJobDescription } from '@aws-sdk/client-glacier';
import { treeHash } from '../core/checksum.js';
import type {
  ArchiveStore,
  Inventory,
  ListedObject,
  RestoreStatus,
  RetrievalTier,
  StoredObject,
  UploadedPart,
} from '../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import { readBody } from './body.js';
import { fromAwsError } from './errors.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';
import { partSizeFor } from './part-size.js';
import { glacierSdk } from './sdk.js';

const MIB = 1024 * 1024;
/** Parts are at least this large unless the caller says otherwise: fewer, larger requests. */
const DEFAULT_MIN_PART = 16 * MIB;
const MAX_DESCRIPTION_BYTES = 1024;
/** Calls that create or delete remote state: an abort does not cut them (see InFlightRequests). */
const RUN_TO_END = new Set([
  'glacier:UploadArchive',
  'glacier:InitiateMultipartUpload',
  'glacier:CompleteMultipartUpload',
  'glacier:AbortMultipartUpload',
  'glacier:InitiateJob',
  'glacier:DeleteArchive',
]);

export interface GlacierArchiveOptions {
  /** Smallest part size used (1 MiB x 2^n); default 16 MiB. */
  minPartSize?: number;
  /** A run's interruption: ends the transfers, reads and listings in flight when it aborts (see InFlightRequests). */
  signal?: AbortSignal;
  /** The session's record of contact with the endpoint, marked by every outcome (see EndpointContact). */
  contact?: EndpointContact;
}

/**
 * Archives in one Glacier vault. Uploads carry the tree hashes the caller
 * computed (the client's body-checksum hook reuses them, see
 * glacierBodyChecksums); reads need a Succeeded archive-retrieval job and
 * return the service's tree hash of each megabyte-aligned range.
 */
export class GlacierArchiveStore implements ArchiveStore {
  readonly target = 'glacier' as const;
  readonly location: string;
  readonly #client: GlacierClient;
  readonly #minPartSize: number;
  readonly #requests: InFlightRequests;
  /** Retrieval jobs found by listing, per archive id. */
  readonly #jobs = new Map<string, string>();

  constructor(client: GlacierClient, vault: string, options: GlacierArchiveOptions = {}) {
    this.#client = client;
    this.location = vault;
    this.#minPartSize = options.minPartSize ?? DEFAULT_MIN_PART;
    this.#requests = new InFlightRequests(options.signal, options.contact);
  }

  partSizeFor(maxBytes: number): number {
    return partSizeFor(maxBytes, this.#minPartSize);
  }

  async putObject(name: string, data: Uint8Array, hash: string): Promise<StoredObject> {
    checkDescription(name);
    const out = await this.#call('glacier:UploadArchive', (abortSignal) => this.#client.send(new (glacierSdk().UploadArchiveCommand)({ ...this.#vault(), archiveDescription: name, checksum: hash, body: data }), { abortSignal }));
    return { ref: required(out.archiveId, 'archive id'), sizeBytes: data.byteLength, treeHash: out.checksum ?? hash };
  }

  async startUpload(name: string, partSize: number): Promise<string> {
    checkDescription(name);
    const out = await this.#call('glacier:InitiateMultipartUpload', (abortSignal) => this.#client.send(new (glacierSdk().InitiateMultipartUploadCommand)({ ...this.#vault(), archiveDescription: name, partSize: String(partSize) }), { abortSignal }));
    return required(out.uploadId, 'upload id');
  }

  async putPart(_name: string, uploadId: string, partNumber: number, offset: number, data: Uint8Array, hash: string): Promise<UploadedPart> {
    const range = `bytes ${offset}-${offset + data.byteLength - 1}/*`;
    const out = await this.#call('glacier:UploadMultipartPart', (abortSignal) => this.#client.send(new (glacierSdk().UploadMultipartPartCommand)({ ...this.#vault(), uploadId, range, checksum: hash, body: data }), { abortSignal }));
    return { partNumber, sizeBytes: data.byteLength, checksum: out.checksum ?? hash };
  }

  async listParts(_name: string, uploadId: string): Promise<UploadedPart[]> {
    const parts: UploadedPart[] = [];
    let marker: string | undefined;
    do {
      const out = await this.#call('glacier:ListParts', (abortSignal) => this.#client.send(new (glacierSdk().ListPartsCommand)({ ...this.#vault(), uploadId, ...(marker ? { marker } : {}) }), { abortSignal }));
      const partSize = out.PartSizeInBytes ?? 0;
      for (const part of out.Parts ?? []) {
        const match = /^(\d+)-(\d+)$/.exec(part.RangeInBytes ?? '');
        if (match === null || partSize <= 0 || part.SHA256TreeHash === undefined) continue;
        const start = Number(match[1]);
        parts.push({ partNumber: Math.floor(start / partSize) + 1, sizeBytes: Number(match[2]) - start + 1, checksum: part.SHA256TreeHash });
      }
      marker = out.Marker ?? undefined;
    } while (marker);
    return parts;
  }

  async completeUpload(_name: string, uploadId: string, _parts: readonly UploadedPart[], sizeBytes: number, hash: string): Promise<StoredObject> {
    const out = await this.#call('glacier:CompleteMultipartUpload', (abortSignal) => this.#client.send(new (glacierSdk().CompleteMultipartUploadCommand)({ ...this.#vault(), uploadId, archiveSize: String(sizeBytes), checksum: hash }), { abortSignal }),
    );
    return { ref: required(out.archiveId, 'archive id'), sizeBytes, treeHash: out.checksum ?? hash };
  }

  async abortUpload(_name: string, uploadId: string): Promise<void> {
    try {
      await this.#call('glacier:AbortMultipartUpload', (abortSignal) => this.#client.send(new (glacierSdk().AbortMultipartUploadCommand)({ ...this.#vault(), uploadId }), { abortSignal }));
    } catch (err) {
      if (!isSnaplineError(err, ErrorCodes.NOT_FOUND)) throw err;
    }
  }

  async getRange(ref: string, start: number, end: number | undefined, job?: string): Promise<{ data: Buffer; treeHash?: string }> {
    const jobId = job ?? (await this.#succeededJob(ref));
    if (jobId === undefined) throw notRetrieved(ref, this.location);
    // The body is read inside the call: an interruption ends its reading too.
    const { data, checksum } = await this.#call(
      'glacier:GetJobOutput',
      async (abortSignal) => {
        const out = await this.#client.send(new (glacierSdk().GetJobOutputCommand)({ ...this.#vault(), jobId, range: `bytes=${start}-${end === undefined ? '' : end - 1}` }), { abortSignal });
        return { data: await readBody(out.body, 'glacier:GetJobOutput'), checksum: out.checksum };
      },
      ref,
    );
    if (end !== undefined && data.byteLength !== end - start) {
      throw new SnaplineError(ErrorCodes.UNAVAILABLE, `glacier:GetJobOutput returned ${data.byteLength} bytes of ${ref}, not ${end - start}`, { retryable: true });
    }
    return { data, ...(checksum ? { treeHash: checksum } : {}) };
  }

  async requestRestore(ref: string, options: { tier: RetrievalTier; days: number; description?: string }): Promise<RestoreStatus> {
    if (options.description !== undefined) checkDescription(options.description);
    const out = await this.#call('glacier:InitiateJob', (abortSignal) => this.#client.send(new (glacierSdk().InitiateJobCommand)({
        ...this.#vault(),
        jobParameters: { Type: 'archive-retrieval', ArchiveId: ref, Tier: options.tier, ...(options.description ? { Description: options.description } : {}) },
      }), { abortSignal }),
      ref,
    );
    const job = required(out.jobId, 'job id');
    this.#jobs.delete(ref);
    return { state: 'in-progress', job };
  }

  async restoreStatus(ref: string, job?: string): Promise<RestoreStatus> {
    if (job !== undefined) {
      try {
        const out = await this.#call('glacier:DescribeJob', (abortSignal) => this.#client.send(new (glacierSdk().DescribeJobCommand)({ ...this.#vault(), jobId: job }), { abortSignal }));
        return statusOfJob(out);
      } catch (err) {
        // A job's output lives at least 24 hours; after that the job is gone and the archive must be retrieved again.
        if (!isSnaplineError(err, ErrorCodes.NOT_FOUND)) throw err;
      }
    }
    const newest = (await this.#listJobs()).filter((j) => j.Action === 'ArchiveRetrieval' && j.ArchiveId === ref).at(-1);
    return newest === undefined ? { state: 'archived' } : statusOfJob(newest);
  }

  async inventory(options: { start: boolean }): Promise<Inventory> {
    const jobs = (await this.#listJobs()).filter((j) => j.Action === 'InventoryRetrieval');
    const done = jobs.filter((j) => j.StatusCode === 'Succeeded').at(-1);
    if (done?.JobId !== undefined) {
      // The body is read inside the call: an interruption ends its reading too.
      const body = await this.#call('glacier:GetJobOutput', async (abortSignal) => {
        const out = await this.#client.send(new (glacierSdk().GetJobOutputCommand)({ ...this.#vault(), jobId: done.JobId }), { abortSignal });
        return readBody(out.body, 'glacier:GetJobOutput');
      });
      return { state: 'ready', objects: parseInventory(body), ...dateOf(done.CompletionDate, 'takenAt') };
    }
    const running = jobs.find((j) => j.StatusCode === 'InProgress');
    if (running?.JobId !== undefined) return { state: 'in-progress', job: running.JobId, ...dateOf(running.CreationDate, 'startedAt') };
    const failed = jobs.at(-1);
    if (!options.start) {
      if (failed?.JobId !== undefined) return { state: 'failed', job: failed.JobId, ...(failed.StatusMessage ? { message: failed.StatusMessage } : {}) };
      throw new SnaplineError(ErrorCodes.NOT_FOUND, `vault ${this.location} has no inventory job`);
    }
    const out = await this.#call('glacier:InitiateJob', (abortSignal) => this.#client.send(new (glacierSdk().InitiateJobCommand)({ ...this.#vault(), jobParameters: { Type: 'inventory-retrieval', Format: 'JSON' } }), { abortSignal }));
    return { state: 'in-progress', job: required(out.jobId, 'job id'), startedAt: new Date() };
  }

  async deleteObject(ref: string): Promise<void> {
    try {
      await this.#call('glacier:DeleteArchive', (abortSignal) => this.#client.send(new (glacierSdk().DeleteArchiveCommand)({ ...this.#vault(), archiveId: ref }), { abortSignal }), ref);
    } catch (err) {
      if (!isSnaplineError(err, ErrorCodes.NOT_FOUND)) throw err;
    }
  }

  /** DescribeVault: false when the vault does not exist. */
  async locationExists(): Promise<boolean> {
    try {
      await this.#call('glacier:DescribeVault', (abortSignal) => this.#client.send(new (glacierSdk().DescribeVaultCommand)(this.#vault()), { abortSignal }));
      return true;
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.NOT_FOUND)) return false;
      throw err;
    }
  }

  #vault() {
    return { accountId: '-', vaultName: this.location };
  }

  /** The newest Succeeded retrieval job of the whole archive, found by listing the vault's jobs. */
  async #succeededJob(archiveId: string): Promise<string | undefined> {
    const cached = this.#jobs.get(archiveId);
    if (cached !== undefined) return cached;
    const job = (await this.#listJobs()).filter(
      (j) => j.Action === 'ArchiveRetrieval' && j.ArchiveId === archiveId && j.StatusCode === 'Succeeded' && (j.RetrievalByteRange === undefined || j.RetrievalByteRange === `0-${(j.ArchiveSizeInBytes ?? 0) - 1}`),
    ).at(-1)?.JobId;
    if (job !== undefined) this.#jobs.set(archiveId, job);
    return job;
  }

  /** Every job of the vault, oldest first. */
  async #listJobs(): Promise<GlacierJobDescription[]> {
    const jobs: GlacierJobDescription[] = [];
    let marker: string | undefined;
    do {
      const out = await this.#call('glacier:ListJobs', (abortSignal) => this.#client.send(new (glacierSdk().ListJobsCommand)({ ...this.#vault(), ...(marker ? { marker } : {}) }), { abortSignal }));
      jobs.push(...(out.JobList ?? []));
      marker = out.Marker ?? undefined;
    } while (marker);
    return jobs.sort((a, b) => (a.CreationDate ?? '').localeCompare(b.CreationDate ?? ''));
  }

  /** Runs one SDK call with the signal of its request (see InFlightRequests, RUN_TO_END), mapping its failure to a SnaplineError. */
  async #call<T>(action: string, send: (abortSignal: AbortSignal | undefined) => Promise<T>, ref?: string): Promise<T> {
    try {
      return await this.#requests.run(action, send, { cutOnAbort: !RUN_TO_END.has(action) });
    } catch (err) {
      throw glacierError(err, action, this.location, ref);
    }
  }
}

/**
 * The GlacierClient's body-checksum hook: the plain SHA-256 the signature
 * needs, and the tree hash the caller already put in x-amz-sha256-tree-hash
 * (computed in the worker pool), so the body is hashed once here, not twice.
 */
export async function glacierBodyChecksums(request: { headers: Record<string, string>; body?: unknown }): Promise<[string, string]> {
  const body = request.body;
  const bytes = typeof body === 'string' ? Buffer.from(body) : body instanceof Uint8Array ? body : new Uint8Array(0);
  const content = createHash('sha256').update(bytes).digest('hex');
  const tree = request.headers['x-amz-sha256-tree-hash'] ?? treeHash(bytes).toString('hex');
  return [content, tree];
}

function statusOfJob(job: GlacierJobDescription): RestoreStatus {
  const base = job.JobId === undefined ? {} : { job: job.JobId };
  if (job.StatusCode === 'Succeeded') {
    const completed = job.CompletionDate === undefined ? undefined : new Date(job.CompletionDate);
    // Output stays available at least 24 hours after the job completes.
    return { state: 'available', ...base, ...(completed ? { expiresAt: new Date(completed.getTime() + 24 * 3600_000) } : {}) };
  }
  if (job.StatusCode === 'Failed') return { state: 'failed', ...base, ...(job.StatusMessage ? { message: job.StatusMessage } : {}) };
  return { state: 'in-progress', ...base };
}

function parseInventory(bytes: Buffer): ListedObject[] {
  let parsed: { ArchiveList?: Array<{ ArchiveId?: string; ArchiveDescription?: string; CreationDate?: string; Size?: number }> };
  try {
    parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
  } catch {
    throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'the vault inventory is not JSON');
  }
  return (parsed.ArchiveList ?? [])
    .filter((a) => typeof a.ArchiveId === 'string')
    .map((a) => ({
      ref: a.ArchiveId!,
      name: a.ArchiveDescription ?? '',
      sizeBytes: a.Size ?? 0,
      ...(a.CreationDate ? { createdAt: new Date(a.CreationDate) } : {}),
    }));
}

function dateOf<K extends string>(value: string | undefined, key: K): Partial<Record<K, Date>> {
  return value === undefined ? {} : ({ [key]: new Date(value) } as Record<K, Date>);
}

function checkDescription(text: string): void {
  if (!/^[\x20-\x7e]*$/.test(text) || text.length > MAX_DESCRIPTION_BYTES) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `a Glacier description must be at most ${MAX_DESCRIPTION_BYTES} printable ASCII characters`);
  }
}

function required(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `Glacier answered without a ${what}`);
  return value;
}

function notRetrieved(ref: string, vault: string): SnaplineError {
  return new SnaplineError(ErrorCodes.BAD_STATE, `archive ${ref} of vault ${vault} has no finished retrieval job`, {
    details: { object: ref },
    hint: 'ask for it with `snapline archive restore`, then wait with `snapline archive status --wait`',
  });
}

/** Glacier's answers as snapline's codes: a job whose output is not ready is BAD_STATE; a missing vault says so. */
function glacierError(err: unknown, action: string, vault: string, ref: string | undefined): SnaplineError {
  const error = fromAwsError(err, action);
  const awsMessage = err instanceof Error ? err.message : '';
  if (error.details?.awsError === 'InvalidParameterValueException' && /not (currently )?available|not ready|in progress/i.test(awsMessage)) {
    return new SnaplineError(ErrorCodes.BAD_STATE, `${action}: the retrieval job${ref ? ` of ${ref}` : ''} has not finished`, {
      cause: err,
      details: error.details,
      hint: 'wait with `snapline archive status --wait`',
    });
  }
  if (error.code === ErrorCodes.NOT_FOUND && /vault/i.test(awsMessage)) {
    return new SnaplineError(ErrorCodes.NOT_FOUND, `vault ${vault} does not exist: ${awsMessage}`, {
      cause: err,
      details: error.details,
      hint: 'check the vault name: --vault, or archive.vault of the connection (`snapline connections show`)',
    });
  }
  return error;
}
