import type { IncomingHttpHeaders } from 'node:http';
import { AwsChunkedDecoder } from '../protocol/aws-chunked.js';
import { AwsError } from '../protocol/aws-error.js';
import {
  CHECKSUM_ALGORITHMS,
  checksumHeaderOf,
  checksumLengthOf,
  isChecksumAlgorithm,
  type ChecksumAlgorithm,
} from '../protocol/flexible-checksums.js';
import { ClientGone, headerOf, type Exchange } from '../protocol/http.js';
import { S3Errors } from './errors.js';
import type { BlobFiles, ReceivedBlob } from '../store/blob-files.js';

/** A received PutObject or UploadPart body and the checksum the client gave for it. */
export interface ObjectBody {
  blob: ReceivedBlob & { md5: Buffer };
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
}

export interface BodyRules {
  maxBytes: number;
  /** The checksum algorithm of the multipart upload: the part must carry a checksum of it. */
  requiredChecksum?: ChecksumAlgorithm;
}

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

/**
 * Streams the body of PutObject or UploadPart into a new file and checks
 * what the request declares about it: Content-MD5, x-amz-content-sha256 (a
 * hex digest; UNSIGNED-PAYLOAD and STREAMING-... carry none), one
 * x-amz-checksum-ALGORITHM given as a header or as an aws-chunked trailer,
 * and x-amz-decoded-content-length; a declared length past maxBytes is
 * EntityTooLarge before any byte is read. On any failure the file is removed and
 * the S3 error thrown; ClientGone when the client went away mid-body.
 */
export async function receiveObjectBody(exchange: Exchange, blobs: BlobFiles, rules: BodyRules): Promise<ObjectBody> {
  const { req } = exchange;
  const headers = req.headers;
  const md5 = expectedMd5(headers);
  const declaredSha256 = headerOf(headers, 'x-amz-content-sha256');
  if (declaredSha256 !== undefined && !HEX_SHA256.test(declaredSha256) && declaredSha256 !== 'UNSIGNED-PAYLOAD' && !declaredSha256.startsWith('STREAMING-')) {
    throw S3Errors.invalidArgument('x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or a valid sha256 value.', 'x-amz-content-sha256', declaredSha256);
  }
  const chunked = (headerOf(headers, 'content-encoding') ?? '').split(',').some((coding) => coding.trim() === 'aws-chunked') || declaredSha256?.startsWith('STREAMING-') === true;
  if (!chunked && headers['content-length'] === undefined) throw S3Errors.missingContentLength();
  const declaredLength = Number(headerOf(headers, chunked ? 'x-amz-decoded-content-length' : 'content-length') ?? 0);
  if (declaredLength > rules.maxBytes) throw S3Errors.entityTooLarge(rules.maxBytes);
  const declared = declaredChecksum(headers);
  if (rules.requiredChecksum !== undefined && declared?.algorithm !== rules.requiredChecksum) {
    const name = rules.requiredChecksum.toLowerCase();
    throw S3Errors.invalidRequest(`The upload was created using a ${name} checksum. The part upload request must also include a ${name} checksum.`);
  }

  const decoder = chunked ? new AwsChunkedDecoder() : undefined;
  let blob: ReceivedBlob;
  try {
    blob = await blobs.receive(req, {
      maxBytes: rules.maxBytes,
      tooLarge: () => S3Errors.entityTooLarge(rules.maxBytes),
      md5: true,
      sha256: declaredSha256 !== undefined && HEX_SHA256.test(declaredSha256),
      ...(declared === undefined ? {} : { checksum: declared.algorithm }),
    }, decoder);
  } catch (err) {
    if (!req.complete && !(err instanceof AwsError)) throw new ClientGone();
    throw err;
  } finally {
    exchange.stats.bytesIn += decoder?.rawBytes ?? 0;
  }
  if (decoder === undefined) exchange.stats.bytesIn += blob.size;
  try {
    if (decoder !== undefined && headers['x-amz-decoded-content-length'] !== undefined && declaredLength !== blob.size) throw S3Errors.incompleteBody();
    if (md5 !== undefined && !md5.equals(blob.md5!)) throw S3Errors.badDigest('The Content-MD5 you specified did not match what we received.');
    if (blob.sha256 !== undefined && blob.sha256.toString('hex') !== declaredSha256!.toLowerCase()) {
      throw S3Errors.contentSha256Mismatch(declaredSha256!, blob.sha256.toString('hex'));
    }
    if (declared === undefined) return { blob: blob as ObjectBody['blob'] };
    const value = declared.value ?? decoder?.trailers.get(checksumHeaderOf(declared.algorithm));
    if (value === undefined) throw S3Errors.invalidRequest(`The ${checksumHeaderOf(declared.algorithm)} trailer is missing.`);
    checkChecksumValue(declared.algorithm, value);
    if (value !== blob.checksum!.toString('base64')) throw S3Errors.badDigest(`The ${declared.algorithm} you specified did not match the calculated checksum.`);
    return { blob: blob as ObjectBody['blob'], checksum: { algorithm: declared.algorithm, value } };
  } catch (err) {
    blobs.remove([blob.name]);
    throw err;
  }
}

function expectedMd5(headers: IncomingHttpHeaders): Buffer | undefined {
  const value = headerOf(headers, 'content-md5');
  if (value === undefined) return undefined;
  const digest = Buffer.from(value, 'base64');
  if (digest.length !== 16 || digest.toString('base64') !== value.trim()) throw S3Errors.invalidDigest(value);
  return digest;
}

/**
 * The checksum the request declares: one x-amz-checksum-* header (value
 * known now) or an x-amz-trailer naming one (value known at the end).
 */
export function declaredChecksum(headers: IncomingHttpHeaders): { algorithm: ChecksumAlgorithm; value?: string } | undefined {
  const given = CHECKSUM_ALGORITHMS.filter((algorithm) => headers[checksumHeaderOf(algorithm)] !== undefined);
  const trailer = headerOf(headers, 'x-amz-trailer')?.trim().toLowerCase();
  const trailed = trailer === undefined ? undefined : CHECKSUM_ALGORITHMS.find((algorithm) => checksumHeaderOf(algorithm) === trailer);
  if (trailer !== undefined && trailed === undefined) throw S3Errors.invalidRequest(`The trailer ${trailer} is not a checksum this endpoint knows.`);
  if (given.length + (trailed === undefined ? 0 : 1) > 1) {
    throw S3Errors.invalidRequest('Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.');
  }
  const sdkAlgorithm = headerOf(headers, 'x-amz-sdk-checksum-algorithm')?.toUpperCase();
  if (sdkAlgorithm !== undefined && !isChecksumAlgorithm(sdkAlgorithm)) {
    throw S3Errors.invalidRequest('Value for x-amz-sdk-checksum-algorithm header is invalid.');
  }
  if (trailed !== undefined) return { algorithm: trailed };
  const algorithm = given[0];
  if (algorithm === undefined) return undefined;
  const value = headerOf(headers, checksumHeaderOf(algorithm))!;
  checkChecksumValue(algorithm, value);
  return { algorithm, value };
}

function checkChecksumValue(algorithm: ChecksumAlgorithm, value: string): void {
  const raw = Buffer.from(value, 'base64');
  if (raw.length !== checksumLengthOf(algorithm) || raw.toString('base64') !== value) {
    throw S3Errors.invalidRequest(`Value for ${checksumHeaderOf(algorithm)} header is invalid.`);
  }
}
