import { safeDecode, send, type Exchange } from './http.js';
import { ACCOUNT_ID } from './snapshots.js';
import { element, textElement, xmlDocument } from './xml.js';

const S3_NAMESPACE = 'http://s3.amazonaws.com/doc/2006-03-01/';
const OWNER = element('Owner', textElement('ID', ACCOUNT_ID.padStart(64, '0')) + textElement('DisplayName', 'snapline'));

/**
 * The S3 subset: ListBuckets (GET /), an empty list until buckets exist.
 * Any bucket is NoSuchBucket; other requests on / are MethodNotAllowed.
 * Errors are S3's `<Error><Code/><Message/><RequestId/></Error>`. Never throws.
 */
export function handleS3(exchange: Exchange): void {
  const { req, path } = exchange;
  if (path === '/' || path === '') {
    if (req.method === 'GET') {
      sendS3(exchange, 200, xmlDocument('ListAllMyBucketsResult', S3_NAMESPACE, OWNER + element('Buckets', '')));
    } else {
      sendS3Error(exchange, 405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    }
    return;
  }
  const bucket = safeDecode(path.split('/')[1] ?? '');
  sendS3Error(exchange, 404, 'NoSuchBucket', 'The specified bucket does not exist', textElement('BucketName', bucket));
}

function sendS3(exchange: Exchange, status: number, xml: string): void {
  send(exchange, status, { 'content-type': 'application/xml', 'x-amz-request-id': exchange.requestId }, xml);
}

export function sendS3Error(exchange: Exchange, status: number, code: string, message: string, extra = ''): void {
  const inner = textElement('Code', code) + textElement('Message', message) + extra + textElement('RequestId', exchange.requestId);
  sendS3(exchange, status, xmlDocument('Error', undefined, inner));
}
