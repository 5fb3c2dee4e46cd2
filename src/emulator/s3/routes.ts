import { restQuery, safeDecode } from '../protocol/http.js';

/** The S3 operations the endpoint serves. */
export type S3Operation =
  | 'ListBuckets'
  | 'CreateBucket'
  | 'HeadBucket'
  | 'DeleteBucket'
  | 'GetBucketLocation'
  | 'ListObjects'
  | 'ListObjectsV2'
  | 'DeleteObjects'
  | 'ListMultipartUploads'
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'RestoreObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListParts';

/** A request matched to an operation, or to why it matches none. */
export type S3Route =
  | { operation: S3Operation; bucket: string; key: string; query: Map<string, string> }
  | { operation: 'S3MethodNotAllowed' | 'S3NotImplemented'; bucket: string; key: string; query: Map<string, string>; what: string };

/**
 * Subresources of S3 that select operations this endpoint does not serve
 * (answered NotImplemented rather than mistaken for a plain object request).
 */
const UNSERVED_SUBRESOURCES = [
  'accelerate', 'acl', 'analytics', 'attributes', 'cors', 'encryption', 'intelligent-tiering', 'inventory', 'legal-hold',
  'lifecycle', 'logging', 'metadataTable', 'metrics', 'notification', 'object-lock', 'ownershipControls', 'policy',
  'policyStatus', 'publicAccessBlock', 'replication', 'requestPayment', 'retention', 'select', 'tagging', 'torrent',
  'versioning', 'versions', 'website',
];

/**
 * Virtual-hosted-style host names: BUCKET.localhost, BUCKET.127.0.0.1 (any
 * IPv4 address) and BUCKET.s3[.REGION].amazonaws.com. Anything else (an IP
 * address, localhost, a plain name) is path style.
 */
const VIRTUAL_HOST = /^(.+)\.(localhost|(?:\d{1,3}\.){3}\d{1,3}|s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?)$/;

/** Bucket and key of a request, path style (`/bucket/key`) or virtual-hosted style (`Host: bucket.127.0.0.1`). */
export function s3AddressOf(path: string, host: string | undefined): { bucket: string; key: string } {
  const hostname = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  const virtual = VIRTUAL_HOST.exec(hostname);
  if (virtual !== null) return { bucket: virtual[1]!, key: safeDecode(path.replace(/^\//, '')) };
  const slash = path.indexOf('/', 1);
  if (slash < 0) return { bucket: safeDecode(path.slice(1)), key: '' };
  return { bucket: safeDecode(path.slice(1, slash)), key: safeDecode(path.slice(slash + 1)) };
}

/** Selects the operation by method, address, subresource and copy-source header. */
export function matchS3Route(method: string, path: string, rawQuery: string, host: string | undefined, copySource: boolean): S3Route {
  const { bucket, key } = s3AddressOf(path, host);
  const query = restQuery(rawQuery);
  const route = (operation: S3Operation): S3Route => ({ operation, bucket, key, query });
  const refuse = (operation: 'S3MethodNotAllowed' | 'S3NotImplemented', what: string): S3Route => ({ operation, bucket, key, query, what });
  const unserved = UNSERVED_SUBRESOURCES.find((name) => query.has(name));
  if (unserved !== undefined) return refuse('S3NotImplemented', `the ${unserved} subresource`);

  if (bucket === '') return method === 'GET' ? route('ListBuckets') : refuse('S3MethodNotAllowed', `${method} on the service`);
  if (key === '') {
    switch (method) {
      case 'PUT':
        return route('CreateBucket');
      case 'HEAD':
        return route('HeadBucket');
      case 'DELETE':
        return route('DeleteBucket');
      case 'POST':
        return query.has('delete') ? route('DeleteObjects') : refuse('S3MethodNotAllowed', 'POST on a bucket');
      case 'GET':
        if (query.has('location')) return route('GetBucketLocation');
        if (query.has('uploads')) return route('ListMultipartUploads');
        return route(query.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects');
      default:
        return refuse('S3MethodNotAllowed', `${method} on a bucket`);
    }
  }
  switch (method) {
    case 'PUT':
      if (copySource) return refuse('S3NotImplemented', query.has('uploadId') ? 'UploadPartCopy' : 'CopyObject');
      return route(query.has('uploadId') || query.has('partNumber') ? 'UploadPart' : 'PutObject');
    case 'POST':
      if (query.has('uploads')) return route('CreateMultipartUpload');
      if (query.has('uploadId')) return route('CompleteMultipartUpload');
      if (query.has('restore')) return route('RestoreObject');
      return refuse('S3MethodNotAllowed', 'POST on an object');
    case 'GET':
      return route(query.has('uploadId') ? 'ListParts' : 'GetObject');
    case 'HEAD':
      return route('HeadObject');
    case 'DELETE':
      return route(query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject');
    default:
      return refuse('S3MethodNotAllowed', `${method} on an object`);
  }
}
