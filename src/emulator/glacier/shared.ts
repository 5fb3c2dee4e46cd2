import { AwsError } from '../protocol/aws-error.js';
import { sendJson, type Exchange } from '../protocol/http.js';
import { ACCOUNT_ID } from '../snapshots.js';
import type { GlacierCatalog, GlacierVault } from '../store/glacier-catalog.js';

export const MIB = 1024 * 1024;

/** Glacier's errors (REST-JSON): the code in x-amzn-ErrorType and in the body with the message and who is at fault. */
export const GlacierErrors = {
  notFound: (message: string) => new AwsError(404, 'ResourceNotFoundException', message),
  invalid: (message: string) => new AwsError(400, 'InvalidParameterValueException', message),
  missing: (message: string) => new AwsError(400, 'MissingParameterValueException', message),
  accessDenied: (message: string) => new AwsError(403, 'AccessDeniedException', message),
  unknownOperation: (message: string) => new AwsError(404, 'UnknownOperationException', message),
  internal: () => new AwsError(500, 'ServiceUnavailableException', 'An internal error has occurred.'),
};

/** `{"code": ..., "message": ..., "type": "Client" | "Server"}` with x-amzn-ErrorType. */
export function sendGlacierError(exchange: Exchange, error: AwsError): void {
  const type = error.status >= 500 ? 'Server' : 'Client';
  sendJson(exchange, error.status, { code: error.code, message: error.message, type }, { 'x-amzn-errortype': error.code });
}

export function vaultArn(region: string, vault: string): string {
  return `arn:aws:glacier:${region}:${ACCOUNT_ID}:vaults/${vault}`;
}

/** ResourceNotFoundException naming the vault's ARN, as Glacier does. */
export function vaultNotFound(region: string, name: string): AwsError {
  return GlacierErrors.notFound(`Vault not found for ARN: ${vaultArn(region, name)}`);
}

/** The vault, or ResourceNotFoundException. */
export function requireVault(catalog: GlacierCatalog, name: string, region: string): GlacierVault {
  const vault = catalog.vault(name);
  if (vault === undefined) throw vaultNotFound(region, name);
  return vault;
}

/** Archive and job descriptions: at most 1024 printable ASCII characters (0x20-0x7E); empty when absent. */
export function checkDescription(value: string | undefined, what: string): string {
  if (value === undefined) return '';
  if (value.length > 1024 || /[^\x20-\x7e]/.test(value)) {
    throw GlacierErrors.invalid(`Invalid ${what} description: it must be at most 1024 printable ASCII characters.`);
  }
  return value;
}

/** Glacier's timestamps: ISO 8601 with milliseconds. */
export function glacierTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** An optional integer query parameter within bounds. */
export function limitOf(query: Map<string, string>, fallback: number, max: number): number {
  const text = query.get('limit');
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > max) throw GlacierErrors.invalid(`Invalid limit: ${text} (1 to ${max}).`);
  return value;
}
