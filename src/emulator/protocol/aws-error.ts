/**
 * An error answer in AWS terms: HTTP status, error code (the exception name
 * the SDKs match on) and, for EBS direct, the Reason member. Each protocol
 * (REST-JSON, EC2 query, STS query, S3 XML) serializes it its own way.
 */
export class AwsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'AwsError';
  }
}

/** EBS direct error constructors, one per exception of the API model. */
export const EbsErrors = {
  validation: (reason: string, message: string) => new AwsError(400, 'ValidationException', message, reason),
  notFound: (message: string, reason = 'SNAPSHOT_NOT_FOUND') => new AwsError(404, 'ResourceNotFoundException', message, reason),
  throttled: (reason: string, message: string) => new AwsError(400, 'RequestThrottledException', message, reason),
  conflict: (message: string) => new AwsError(409, 'ConflictException', message),
  accessDenied: (reason: string, message: string) => new AwsError(403, 'AccessDeniedException', message, reason),
  internal: (message = 'An internal error has occurred.') => new AwsError(500, 'InternalServerException', message),
  concurrentLimit: (message: string) => new AwsError(400, 'ConcurrentLimitExceededException', message),
  quotaExceeded: (reason: string, message: string) => new AwsError(402, 'ServiceQuotaExceededException', message, reason),
};
