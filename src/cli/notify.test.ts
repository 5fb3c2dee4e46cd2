import { describe, expect, it } from 'vitest';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { notifyEvent, notifyUrlOption, shownUrl, withoutUrlSecrets } from './notify.js';

describe('notify events', () => {
  it('cut URLs in an error message to scheme, host and path', () => {
    expect(withoutUrlSecrets('cannot reach https://user:pw-secret@ebs.example:8443/a/b?X-Amz-Signature=sig-secret#frag now')).toBe('cannot reach https://ebs.example:8443/a/b now');
    expect(withoutUrlSecrets('no url here')).toBe('no url here');
  });

  it('carry the error code and a scrubbed message, and nothing of the error\'s details or cause', () => {
    const error = new SnaplineError(ErrorCodes.ENDPOINT_UNREACHABLE, 'http://k:s-secret@127.0.0.1:1/?token=t-secret refused', {
      details: { secretAccessKey: 'd-secret' },
      cause: new Error('c-secret'),
      hint: 'h-secret',
    });
    const event = notifyEvent('backup', [], new Date(0), new Date(1000), error.exitCode, error);
    expect(event.error).toEqual({ code: 'ENDPOINT_UNREACHABLE', message: 'http://127.0.0.1:1/ refused' });
    expect(JSON.stringify(event)).not.toMatch(/secret/);
    expect(event).toMatchObject({ event: 'backup.failed', result: 'failure', durationMs: 1000 });
  });

  it('a run that ends with a non-zero exit code without an error is a failure', () => {
    expect(notifyEvent('restore', [], new Date(0), new Date(0), 1, undefined)).toMatchObject({ event: 'restore.failed', result: 'failure', error: null });
  });

  it('--notify refuses user:password@ and other schemes without quoting the URL; shown URLs are origins', () => {
    expect(() => notifyUrlOption('https://u:p-secret@h.example/x')).toThrow(/must not carry user:password@/);
    expect(() => notifyUrlOption('ftp://h.example/x')).toThrow(/must be an http:\/\/ or https:\/\/ URL$/);
    expect(notifyUrlOption('https://h.example/hook?key=1')).toBe('https://h.example/hook?key=1');
    expect(shownUrl('https://h.example/T0/secret?key=1')).toBe('https://h.example');
  });
});
