/**
 * The SDK retry modes a connection may choose (config file `retries.mode`,
 * AWS_RETRY_MODE). A plain list, so that the config parser can check the
 * setting without loading the AWS clients.
 */
export const RETRY_MODES = ['standard', 'adaptive'] as const;
export type RetryMode = (typeof RETRY_MODES)[number];
