import { randomBytes } from 'node:crypto';
import { AwsError } from '../protocol/aws-error.js';
import type { GlacierJobs } from './jobs.js';
import {
  checkDescription,
  GlacierErrors,
  glacierTime,
  limitOf,
  MIB,
  requireVault,
  sendGlacierError,
  vaultArn,
  vaultNotFound,
} from './shared.js';
import { treeHashOfChunks, treeHashOfParts } from './tree-hash.js';
import { ClientGone, headerOf, readBody, safeDecode, send, sendJson, type Exchange } from '../protocol/http.js';
import { ACCOUNT_ID } from '../snapshots.js';
import type { BlobFiles, ReceivedBlob } from '../store/blob-files.js';
import type { GlacierCatalog, GlacierUpload } from '../store/glacier-catalog.js';

/** The Glacier operations the endpoint serves. */
export type GlacierOperation =
  | 'ListVaults'
  | 'CreateVault'
  | 'DescribeVault'
  | 'DeleteVault'
  | 'UploadArchive'
  | 'DeleteArchive'
  | 'InitiateMultipartUpload'
  | 'ListMultipartUploads'
  | 'UploadMultipartPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListParts'
  | 'InitiateJob'
  | 'ListJobs'
  | 'DescribeJob'
  | 'GetJobOutput';

export interface GlacierRoute {
  operation: GlacierOperation;
  account: string;
  vault: string;
  /** The archive, upload or job id of the path, or ''. */
  id: string;
}

const MAX_ARCHIVE_SIZE = 4 * 1024 * MIB;
const MAX_PART_SIZE = 4 * 1024 * MIB;
const MAX_PARTS = 10_000;
const VAULT_NAME = /^[A-Za-z0-9_.-]{1,255}$/;
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;
/** The one Glacier API version (x-amz-glacier-version). */
const GLACIER_API_VERSION = '2012-06-01';

/**
 * Matches the Glacier REST paths under /{accountId}/vaults:
 *   GET    /-/vaults                                   ListVaults
 *   PUT    /-/vaults/{v}   GET DescribeVault   DELETE  CreateVault, DescribeVault, DeleteVault
 *   POST   /-/vaults/{v}/archives                      UploadArchive
 *   DELETE /-/vaults/{v}/archives/{id}                 DeleteArchive
 *   POST   /-/vaults/{v}/multipart-uploads             InitiateMultipartUpload (GET: ListMultipartUploads)
 *   PUT    /-/vaults/{v}/multipart-uploads/{id}        UploadMultipartPart (POST: Complete, DELETE: Abort, GET: ListParts)
 *   POST   /-/vaults/{v}/jobs                          InitiateJob (GET: ListJobs)
 *   GET    /-/vaults/{v}/jobs/{id}[/output]            DescribeJob, GetJobOutput
 */
export function matchGlacierRoute(method: string, path: string): GlacierRoute | undefined {
  const parts = path.split('/').map(safeDecode);
  if (parts[0] !== '' || parts[2] !== 'vaults' || !parts[1]) return undefined;
  const [, account, , vault = '', collection, id = '', tail] = parts as [string, string, string, string?, string?, string?, string?];
  const route = (operation: GlacierOperation): GlacierRoute => ({ operation, account, vault, id });
  const pick = (operations: Partial<Record<string, GlacierOperation>>) => {
    const operation = operations[method];
    return operation === undefined ? undefined : route(operation);
  };
  switch (parts.length) {
    case 3:
      return pick({ GET: 'ListVaults' });
    case 4:
      return pick({ PUT: 'CreateVault', GET: 'DescribeVault', DELETE: 'DeleteVault' });
    case 5:
      if (collection === 'archives') return pick({ POST: 'UploadArchive' });
      if (collection === 'multipart-uploads') return pick({ POST: 'InitiateMultipartUpload', GET: 'ListMultipartUploads' });
      if (collection === 'jobs') return pick({ POST: 'InitiateJob', GET: 'ListJobs' });
      return undefined;
    case 6:
      if (collection === 'archives') return pick({ DELETE: 'DeleteArchive' });
      if (collection === 'multipart-uploads') {
        return pick({ PUT: 'UploadMultipartPart', POST: 'CompleteMultipartUpload', DELETE: 'AbortMultipartUpload', GET: 'ListParts' });
      }
      if (collection === 'jobs') return pick({ GET: 'DescribeJob' });
      return undefined;
    case 7:
      return collection === 'jobs' && tail === 'output' ? pick({ GET: 'GetJobOutput' }) : undefined;
    default:
      return undefined;
  }
}

/**
 * The Glacier subset over REST-JSON: vaults, archives (UploadArchive and
 * multipart uploads, every tree hash verified), and jobs (jobs.ts).
 * The account is '-' or the endpoint's own. Archive bytes live in files with
 * the SHA-256 of each 1 MiB chunk kept, so ranged job output gets its tree
 * hash without reading the data twice.
 */
export class GlacierApi {
  constructor(
    private readonly catalog: GlacierCatalog,
    private readonly blobs: BlobFiles,
    private readonly jobs: GlacierJobs,
    private readonly now: () => number,
  ) {}

  /** Answers one Glacier request (or none matched: undefined). Rethrows only unexpected failures, after answering 500. */
  async handle(route: GlacierRoute | undefined, exchange: Exchange): Promise<void> {
    try {
      if (route === undefined) throw GlacierErrors.unknownOperation(`No Glacier operation matches ${exchange.req.method} ${exchange.path}.`);
      if (route.account !== '-' && route.account !== ACCOUNT_ID) {
        throw GlacierErrors.accessDenied(`Access denied for account ${route.account}: this endpoint holds account ${ACCOUNT_ID} (or '-').`);
      }
      // Common Request Headers: every request names the API version.
      const version = headerOf(exchange.req.headers, 'x-amz-glacier-version');
      if (version === undefined) throw GlacierErrors.missing(`Missing required header: x-amz-glacier-version (this API is ${GLACIER_API_VERSION})`);
      if (version !== GLACIER_API_VERSION) throw GlacierErrors.invalid(`Unsupported x-amz-glacier-version: ${version} (this API is ${GLACIER_API_VERSION})`);
      if (route.operation !== 'ListVaults' && !VAULT_NAME.test(route.vault)) throw GlacierErrors.invalid(`Invalid vault name: ${route.vault}`);
      await this.#dispatch(route, exchange);
    } catch (err) {
      if (err instanceof ClientGone) return;
      sendGlacierError(exchange, err instanceof AwsError ? err : GlacierErrors.internal());
      if (!(err instanceof AwsError)) throw err;
    }
  }

  async #dispatch(route: GlacierRoute, exchange: Exchange): Promise<void> {
    const { vault, id } = route;
    const query = new Map(new URLSearchParams(exchange.query));
    switch (route.operation) {
      case 'ListVaults':
        return this.#listVaults(query, exchange);
      case 'CreateVault':
        await readBody(exchange.req, exchange.stats);
        this.catalog.createVault(vault, this.now());
        return send(exchange, 201, { location: `/${ACCOUNT_ID}/vaults/${vault}`, 'x-amzn-requestid': exchange.requestId });
      case 'DescribeVault':
        requireVault(this.catalog, vault, exchange.region);
        return sendJson(exchange, 200, this.#describeVault(vault, exchange.region));
      case 'DeleteVault': {
        requireVault(this.catalog, vault, exchange.region);
        const { outcome, files } = this.catalog.deleteVault(vault);
        if (outcome === 'not-empty') throw GlacierErrors.invalid(`Vault not empty or recently written to: ${vaultArn(exchange.region, vault)}`);
        this.blobs.remove(files);
        return send(exchange, 204, { 'x-amzn-requestid': exchange.requestId });
      }
      case 'UploadArchive':
        return this.#uploadArchive(vault, exchange);
      case 'DeleteArchive': {
        requireVault(this.catalog, vault, exchange.region);
        const archive = this.catalog.archive(id);
        const files = archive?.vault === vault ? this.catalog.deleteArchive(id) : undefined;
        if (files === undefined) throw GlacierErrors.notFound(`Archive not found: ${id}`);
        this.blobs.remove(files);
        return send(exchange, 204, { 'x-amzn-requestid': exchange.requestId });
      }
      case 'InitiateMultipartUpload':
        return this.#initiateUpload(vault, exchange);
      case 'ListMultipartUploads':
        return this.#listUploads(vault, query, exchange);
      case 'UploadMultipartPart':
        return this.#uploadPart(vault, id, exchange);
      case 'CompleteMultipartUpload':
        return this.#completeUpload(vault, id, exchange);
      case 'AbortMultipartUpload': {
        this.#upload(vault, id, exchange.region);
        this.blobs.remove(this.catalog.abortUpload(id) ?? []);
        return send(exchange, 204, { 'x-amzn-requestid': exchange.requestId });
      }
      case 'ListParts':
        return this.#listParts(vault, id, query, exchange);
      case 'InitiateJob':
      case 'ListJobs':
      case 'DescribeJob':
      case 'GetJobOutput':
        requireVault(this.catalog, vault, exchange.region);
        return this.jobs.handle(route.operation, vault, id, query, exchange);
    }
  }

  // ---- vaults ---------------------------------------------------------------

  #describeVault(vault: string, region: string): Record<string, unknown> {
    const found = requireVault(this.catalog, vault, region);
    const totals = this.catalog.totals(vault);
    return {
      CreationDate: glacierTime(found.createdAt),
      LastInventoryDate: null,
      NumberOfArchives: totals.archives,
      SizeInBytes: totals.size,
      VaultARN: vaultArn(region, vault),
      VaultName: vault,
    };
  }

  #listVaults(query: Map<string, string>, exchange: Exchange): void {
    const limit = limitOf(query, 10, 10);
    const marker = query.get('marker');
    const all = this.catalog.vaults();
    const from = marker === undefined ? 0 : all.findIndex((vault) => vault.name === marker);
    if (from < 0) throw GlacierErrors.invalid(`Invalid marker: ${marker}`);
    const page = all.slice(from, from + limit);
    const next = all[from + limit]?.name ?? null;
    sendJson(exchange, 200, { Marker: next, VaultList: page.map((vault) => this.#describeVault(vault.name, exchange.region)) });
  }

  // ---- archives -------------------------------------------------------------

  async #uploadArchive(vault: string, exchange: Exchange): Promise<void> {
    requireVault(this.catalog, vault, exchange.region);
    const headers = exchange.req.headers;
    const description = checkDescription(headerOf(headers, 'x-amz-archive-description'), 'archive');
    const length = declaredLength(exchange);
    if (length === 0) throw GlacierErrors.invalid('Invalid Content-Length: 0. An archive holds at least one byte.');
    if (length > MAX_ARCHIVE_SIZE) throw GlacierErrors.invalid(`Invalid Content-Length: ${length}. UploadArchive takes at most 4 GiB; use a multipart upload.`);
    const blob = await this.#receive(exchange, length);
    const treeHash = treeHashOfChunks(blob.chunkHashes!);
    const archiveId = randomBytes(103).toString('base64url');
    const stored = this.catalog.putArchive({ archiveId, vault, size: blob.size, treeHash, description, createdAt: this.now() }, blob, blob.chunkHashes!);
    if (!stored) {
      this.blobs.remove([blob.name]);
      throw vaultNotFound(exchange.region, vault);
    }
    send(exchange, 201, {
      location: `/${ACCOUNT_ID}/vaults/${vault}/archives/${archiveId}`,
      'x-amz-archive-id': archiveId,
      'x-amz-sha256-tree-hash': treeHash,
      'x-amzn-requestid': exchange.requestId,
    });
  }

  /**
   * Streams an archive or part body into a file and verifies it: length as
   * declared, x-amz-sha256-tree-hash and x-amz-content-sha256 (both
   * required, the latter a SHA-256: no unsigned payload). Removes the file on failure.
   */
  async #receive(exchange: Exchange, length: number): Promise<ReceivedBlob> {
    const headers = exchange.req.headers;
    const expectedTree = headerOf(headers, 'x-amz-sha256-tree-hash');
    if (expectedTree === undefined) throw GlacierErrors.missing('Missing required header: x-amz-sha256-tree-hash');
    if (!HEX_SHA256.test(expectedTree)) throw GlacierErrors.invalid(`Invalid x-amz-sha256-tree-hash: ${expectedTree}`);
    // Common Request Headers: Upload Archive and Upload Part carry the SHA-256 of the whole payload (its linear hash; no unsigned payload).
    const contentSha = headerOf(headers, 'x-amz-content-sha256');
    if (contentSha === undefined) throw GlacierErrors.missing('Missing required header: x-amz-content-sha256');
    if (!HEX_SHA256.test(contentSha)) throw GlacierErrors.invalid(`Invalid x-amz-content-sha256: ${contentSha}: it must be the SHA-256 of the payload`);
    let blob: ReceivedBlob;
    try {
      blob = await this.blobs.receive(exchange.req, {
        maxBytes: length,
        tooLarge: () => GlacierErrors.invalid(`The body is longer than its Content-Length (${length}).`),
        sha256: true,
        treeChunks: true,
      });
    } catch (err) {
      if (!exchange.req.complete && !(err instanceof AwsError)) throw new ClientGone();
      throw err;
    }
    exchange.stats.bytesIn += blob.size;
    try {
      if (blob.size !== length) throw GlacierErrors.invalid(`The body holds ${blob.size} bytes, Content-Length says ${length}.`);
      const treeHash = treeHashOfChunks(blob.chunkHashes!);
      if (treeHash !== expectedTree.toLowerCase()) throw GlacierErrors.invalid(`Checksum mismatch: expected ${expectedTree} (x-amz-sha256-tree-hash), calculated ${treeHash}`);
      if (blob.sha256!.toString('hex') !== contentSha.toLowerCase()) {
        throw GlacierErrors.invalid(`Checksum mismatch: expected ${contentSha} (x-amz-content-sha256), calculated ${blob.sha256!.toString('hex')}`);
      }
      return blob;
    } catch (err) {
      this.blobs.remove([blob.name]);
      throw err;
    }
  }

  // ---- multipart uploads ----------------------------------------------------

  async #initiateUpload(vault: string, exchange: Exchange): Promise<void> {
    requireVault(this.catalog, vault, exchange.region);
    await readBody(exchange.req, exchange.stats);
    const headers = exchange.req.headers;
    const description = checkDescription(headerOf(headers, 'x-amz-archive-description'), 'archive');
    const sizeText = headerOf(headers, 'x-amz-part-size');
    if (sizeText === undefined) throw GlacierErrors.missing('Missing required header: x-amz-part-size');
    const partSize = Number(sizeText);
    if (!isPartSize(sizeText, partSize)) {
      throw GlacierErrors.invalid(`Invalid part size: ${sizeText}. Part size must be 1 MiB (1048576 bytes) times a power of two, up to 4 GiB.`);
    }
    const uploadId = randomBytes(69).toString('base64url');
    this.catalog.createUpload({ uploadId, vault, partSize, description, createdAt: this.now() });
    send(exchange, 201, {
      location: `/${ACCOUNT_ID}/vaults/${vault}/multipart-uploads/${uploadId}`,
      'x-amz-multipart-upload-id': uploadId,
      'x-amzn-requestid': exchange.requestId,
    });
  }

  async #uploadPart(vault: string, uploadId: string, exchange: Exchange): Promise<void> {
    const upload = this.#upload(vault, uploadId, exchange.region);
    const rangeText = headerOf(exchange.req.headers, 'content-range');
    if (rangeText === undefined) throw GlacierErrors.missing('Missing required header: Content-Range');
    const match = /^bytes (\d+)-(\d+)\/\*$/.exec(rangeText.trim());
    if (match === null) throw GlacierErrors.invalid(`Invalid Content-Range: ${rangeText}. It must look like 'bytes A-B/*'.`);
    const first = Number(match[1]);
    const last = Number(match[2]);
    if (last < first || first % upload.partSize !== 0 || last - first + 1 > upload.partSize) {
      throw GlacierErrors.invalid(`Content-Range ${rangeText} is not aligned to the part size ${upload.partSize}: parts start at multiples of it and are at most that long.`);
    }
    if (first / upload.partSize >= MAX_PARTS) throw GlacierErrors.invalid(`Content-Range ${rangeText} is past part ${MAX_PARTS}, the most an upload may have.`);
    const length = declaredLength(exchange);
    if (length !== last - first + 1) throw GlacierErrors.invalid(`Content-Range ${rangeText} covers ${last - first + 1} bytes but Content-Length is ${length}.`);
    const blob = await this.#receive(exchange, length);
    const treeHash = treeHashOfChunks(blob.chunkHashes!);
    const replaced = this.catalog.putPart(uploadId, { firstByte: first, size: blob.size, treeHash }, blob, blob.chunkHashes!);
    if (replaced === undefined) {
      this.blobs.remove([blob.name]);
      throw uploadNotFound(uploadId);
    }
    this.blobs.remove(replaced);
    send(exchange, 204, { 'x-amz-sha256-tree-hash': treeHash, 'x-amzn-requestid': exchange.requestId });
  }

  async #completeUpload(vault: string, uploadId: string, exchange: Exchange): Promise<void> {
    const upload = this.#upload(vault, uploadId, exchange.region);
    await readBody(exchange.req, exchange.stats);
    const headers = exchange.req.headers;
    const sizeText = headerOf(headers, 'x-amz-archive-size');
    const expectedTree = headerOf(headers, 'x-amz-sha256-tree-hash');
    if (sizeText === undefined) throw GlacierErrors.missing('Missing required header: x-amz-archive-size');
    if (expectedTree === undefined) throw GlacierErrors.missing('Missing required header: x-amz-sha256-tree-hash');
    const size = Number(sizeText);
    if (!/^\d+$/.test(sizeText)) throw GlacierErrors.invalid(`Invalid x-amz-archive-size: ${sizeText}`);
    const parts = this.catalog.parts(uploadId);
    let expectedFirst = 0;
    for (const [n, part] of parts.entries()) {
      const isLast = n === parts.length - 1;
      if (part.firstByte !== expectedFirst) throw GlacierErrors.invalid(`The parts do not cover the archive: bytes from ${expectedFirst} are missing.`);
      if (!isLast && part.size !== upload.partSize) {
        throw GlacierErrors.invalid(`Part ${part.firstByte}-${part.firstByte + part.size - 1} is shorter than the part size ${upload.partSize}; only the last part may be.`);
      }
      expectedFirst += part.size;
    }
    if (parts.length === 0 || expectedFirst !== size) {
      throw GlacierErrors.invalid(`The parts hold ${expectedFirst} bytes but x-amz-archive-size is ${sizeText}.`);
    }
    const treeHash = treeHashOfParts(parts.map((part) => part.treeHash));
    if (treeHash !== expectedTree.toLowerCase()) throw GlacierErrors.invalid(`Checksum mismatch: expected ${expectedTree} (x-amz-sha256-tree-hash), calculated ${treeHash}`);
    const archiveId = randomBytes(103).toString('base64url');
    const created = this.catalog.completeUpload(uploadId, { archiveId, vault, size, treeHash, description: upload.description, createdAt: this.now() });
    if (!created) throw uploadNotFound(uploadId);
    send(exchange, 201, {
      location: `/${ACCOUNT_ID}/vaults/${vault}/archives/${archiveId}`,
      'x-amz-archive-id': archiveId,
      'x-amz-sha256-tree-hash': treeHash,
      'x-amzn-requestid': exchange.requestId,
    });
  }

  #listParts(vault: string, uploadId: string, query: Map<string, string>, exchange: Exchange): void {
    const upload = this.#upload(vault, uploadId, exchange.region);
    const limit = limitOf(query, 1000, 1000);
    const marker = query.get('marker');
    if (marker !== undefined && !/^\d+$/.test(marker)) throw GlacierErrors.invalid(`Invalid marker: ${marker}`);
    const after = this.catalog.parts(uploadId).filter((part) => marker === undefined || part.firstByte >= Number(marker));
    const page = after.slice(0, limit);
    sendJson(exchange, 200, {
      ArchiveDescription: upload.description,
      CreationDate: glacierTime(upload.createdAt),
      Marker: after.length > limit ? String(after[limit]!.firstByte) : null,
      MultipartUploadId: uploadId,
      PartSizeInBytes: upload.partSize,
      Parts: page.map((part) => ({ RangeInBytes: `${part.firstByte}-${part.firstByte + part.size - 1}`, SHA256TreeHash: part.treeHash })),
      VaultARN: vaultArn(exchange.region, vault),
    });
  }

  #listUploads(vault: string, query: Map<string, string>, exchange: Exchange): void {
    requireVault(this.catalog, vault, exchange.region);
    const limit = limitOf(query, 50, 50);
    const marker = query.get('marker');
    const all = this.catalog.uploadsOf(vault);
    const from = marker === undefined ? 0 : all.findIndex((upload) => upload.uploadId === marker);
    if (from < 0) throw GlacierErrors.invalid(`Invalid marker: ${marker}`);
    sendJson(exchange, 200, {
      Marker: all[from + limit]?.uploadId ?? null,
      UploadsList: all.slice(from, from + limit).map((upload) => ({
        ArchiveDescription: upload.description,
        CreationDate: glacierTime(upload.createdAt),
        MultipartUploadId: upload.uploadId,
        PartSizeInBytes: upload.partSize,
        VaultARN: vaultArn(exchange.region, vault),
      })),
    });
  }

  #upload(vault: string, uploadId: string, region: string): GlacierUpload {
    requireVault(this.catalog, vault, region);
    const upload = this.catalog.upload(uploadId);
    if (upload === undefined || upload.vault !== vault) throw uploadNotFound(uploadId);
    return upload;
  }
}

function uploadNotFound(uploadId: string): AwsError {
  return GlacierErrors.notFound(`Multipart upload not found: ${uploadId}`);
}

/** Part sizes are 1 MiB x 2^n, from 1 MiB to 4 GiB. */
function isPartSize(text: string, size: number): boolean {
  if (!/^\d+$/.test(text) || size < MIB || size > MAX_PART_SIZE || size % MIB !== 0) return false;
  const mebibytes = size / MIB;
  return (mebibytes & (mebibytes - 1)) === 0;
}

/** Content-Length of an upload, required (Glacier takes no chunked bodies). */
function declaredLength(exchange: Exchange): number {
  const text = headerOf(exchange.req.headers, 'content-length');
  if (text === undefined) throw GlacierErrors.missing('Missing required header: Content-Length');
  return Number(text);
}
