import { ErrorCodes, SnaplineError } from '../../errors.js';

/** An access key the endpoint accepts: requests must be signed with its secret. */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

const ACCESS_KEY_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Parses `KEYID:SECRET`. `origin` names where it came from in the message
 * (a flag, a file and line); the message never repeats the secret. Throws
 * SnaplineError INVALID_ARGUMENT.
 */
export function parseAccessKey(text: string, origin: string): AccessKey {
  const colon = text.indexOf(':');
  const accessKeyId = colon < 0 ? '' : text.slice(0, colon).trim();
  const secretAccessKey = colon < 0 ? '' : text.slice(colon + 1).trim();
  if (!ACCESS_KEY_ID.test(accessKeyId) || secretAccessKey === '') {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `${origin} must look like KEYID:SECRET (a key id of letters, digits, '_', '.' or '-', then a non-empty secret)`,
    );
  }
  return { accessKeyId, secretAccessKey };
}

/** Access keys from a file: one KEYID:SECRET a line; blank lines and lines starting with '#' are skipped. */
export function parseAccessKeyFile(text: string, path: string): AccessKey[] {
  const keys: AccessKey[] = [];
  for (const [n, line] of text.split('\n').entries()) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    keys.push(parseAccessKey(trimmed, `line ${n + 1} of ${path}`));
  }
  return keys;
}

/** Checks a key list: not empty, no key id twice. Returns a map by key id. */
export function accessKeyMap(keys: readonly AccessKey[]): Map<string, string> {
  const byId = new Map<string, string>();
  for (const key of keys) {
    if (byId.has(key.accessKeyId)) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `access key ${key.accessKeyId} is given twice`);
    }
    byId.set(key.accessKeyId, key.secretAccessKey);
  }
  return byId;
}
