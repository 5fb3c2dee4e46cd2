import { createRequire } from 'node:module';

/**
 * The AWS SDK packages, each loaded on its first use instead of when a module
 * of src/aws is imported: a run pays only for the services it calls (the EC2
 * package alone takes about a third of a second of CPU to load, more than a
 * CLI start-up). The packages are CommonJS: require loads them synchronously,
 * the same module instances an import would give.
 */
const require = createRequire(import.meta.url);

function onFirstUse<T>(id: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(id) as T);
}

export const ebsSdk = onFirstUse<typeof import('@aws-sdk/client-ebs')>('@aws-sdk/client-ebs');
export const ec2Sdk = onFirstUse<typeof import('@aws-sdk/client-ec2')>('@aws-sdk/client-ec2');
export const ecsSdk = onFirstUse<typeof import('@aws-sdk/client-ecs')>('@aws-sdk/client-ecs');
export const glacierSdk = onFirstUse<typeof import('@aws-sdk/client-glacier')>('@aws-sdk/client-glacier');
export const logsSdk = onFirstUse<typeof import('@aws-sdk/client-cloudwatch-logs')>('@aws-sdk/client-cloudwatch-logs');
export const s3Sdk = onFirstUse<typeof import('@aws-sdk/client-s3')>('@aws-sdk/client-s3');
export const stsSdk = onFirstUse<typeof import('@aws-sdk/client-sts')>('@aws-sdk/client-sts');
export const httpHandlerSdk = onFirstUse<typeof import('@smithy/node-http-handler')>('@smithy/node-http-handler');
