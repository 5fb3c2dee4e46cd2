import { AwsError } from '../protocol/aws-error.js';

/** An S3 error: status, code, message and the extra elements S3 puts in its `<Error>` document. */
export class S3Error extends AwsError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly fields: Readonly<Record<string, string | number>> = {},
  ) {
    super(status, code, message);
  }
}

/** S3's errors, with the status codes and messages of its error reference. */
export const S3Errors = {
  noSuchBucket: (bucket: string) => new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket }),
  noSuchKey: (key: string) => new S3Error(404, 'NoSuchKey', 'The specified key does not exist.', { Key: key }),
  noSuchUpload: (uploadId: string) =>
    new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', {
      UploadId: uploadId,
    }),
  bucketNotEmpty: (bucket: string) => new S3Error(409, 'BucketNotEmpty', 'The bucket you tried to delete is not empty', { BucketName: bucket }),
  bucketAlreadyOwnedByYou: (bucket: string) =>
    new S3Error(409, 'BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.', { BucketName: bucket }),
  invalidBucketName: (bucket: string) => new S3Error(400, 'InvalidBucketName', 'The specified bucket is not valid.', { BucketName: bucket }),
  keyTooLong: (size: number) =>
    new S3Error(400, 'KeyTooLongError', 'Your key is too long', { Size: size, MaxSizeAllowed: 1024 }),
  invalidArgument: (message: string, name?: string, value?: string) =>
    new S3Error(400, 'InvalidArgument', message, name === undefined ? {} : { ArgumentName: name, ArgumentValue: value ?? '' }),
  invalidRequest: (message: string) => new S3Error(400, 'InvalidRequest', message),
  malformedXml: () => new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema'),
  invalidStorageClass: (value: string) =>
    new S3Error(400, 'InvalidStorageClass', 'The storage class you specified is not valid', { StorageClassRequested: value }),
  invalidDigest: (value: string) => new S3Error(400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.', { 'Content-MD5': value }),
  badDigest: (message: string) => new S3Error(400, 'BadDigest', message),
  contentSha256Mismatch: (given: string, computed: string) =>
    new S3Error(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.", {
      ClientComputedContentSHA256: given,
      S3ComputedContentSHA256: computed,
    }),
  incompleteBody: () => new S3Error(400, 'IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header'),
  missingContentLength: () => new S3Error(411, 'MissingContentLength', 'You must provide the Content-Length HTTP header.'),
  entityTooLarge: (max: number) => new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size', { MaxSizeAllowed: max }),
  entityTooSmall: (size: number, min: number) =>
    new S3Error(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed size', { ProposedSize: size, MinSizeAllowed: min }),
  metadataTooLarge: (size: number) =>
    new S3Error(400, 'MetadataTooLarge', 'Your metadata headers exceed the maximum allowed metadata size', { Size: size, MaxSizeAllowed: 2048 }),
  invalidPart: (message: string, partNumber: number, etag: string) =>
    new S3Error(400, 'InvalidPart', message, { PartNumber: partNumber, ETag: etag }),
  invalidPartOrder: () =>
    new S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.'),
  invalidObjectState: (storageClass: string) =>
    new S3Error(403, 'InvalidObjectState', "The operation is not valid for the object's storage class", { StorageClass: storageClass }),
  restoreNotAllowed: (storageClass: string) =>
    new S3Error(403, 'InvalidObjectState', "Restore is not allowed for the object's current storage class", { StorageClass: storageClass }),
  restoreInProgress: () => new S3Error(409, 'RestoreAlreadyInProgress', 'Object restore is already in progress'),
  alreadyInActiveTier: () => new S3Error(403, 'ObjectAlreadyInActiveTierError', 'This operation is not allowed against this storage tier.'),
  invalidRange: (requested: string, size: number) =>
    new S3Error(416, 'InvalidRange', 'The requested range is not satisfiable', { RangeRequested: requested, ActualObjectSize: size }),
  accessDenied: () => new S3Error(403, 'AccessDenied', 'Access Denied'),
  notImplemented: (what: string) => new S3Error(501, 'NotImplemented', `A header or query you provided implies functionality that is not implemented: ${what}.`),
  methodNotAllowed: (what: string) => new S3Error(405, 'MethodNotAllowed', `The specified method is not allowed against this resource: ${what}.`),
  internal: () => new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.'),
};
