import type { STSClient } from '@aws-sdk/client-sts';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { assumedRoleCredentials } from './assume-role.js';

const ROLE = { roleArn: 'arn:aws:iam::111122223333:role/backup' };
const HOUR = 3600_000;

/** A stand-in STS client: counts AssumeRole calls and answers with credentials valid for an hour from `clock`. */
function fakeSts(clock: { ms: number }, fail: () => boolean = () => false) {
  const inputs: Record<string, unknown>[] = [];
  const sts = {
    send: async (command: { input: Record<string, unknown> }) => {
      inputs.push(command.input);
      await Promise.resolve();
      if (fail()) throw Object.assign(new Error('no'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
      const n = inputs.length;
      return {
        Credentials: { AccessKeyId: `ASIA${n}`, SecretAccessKey: `secret-${n}`, SessionToken: `token-${n}`, Expiration: new Date(clock.ms + HOUR) },
      };
    },
  };
  return { sts: sts as unknown as STSClient, inputs };
}

describe('assumedRoleCredentials', () => {
  it('calls AssumeRole with the session name and duration defaults, and keeps the answer', async () => {
    const clock = { ms: Date.UTC(2030, 0, 1) };
    const { sts, inputs } = fakeSts(clock);
    const provider = assumedRoleCredentials(sts, ROLE, () => clock.ms);
    const first = await provider();
    expect(first).toMatchObject({ accessKeyId: 'ASIA1', sessionToken: 'token-1' });
    clock.ms += 50 * 60_000;
    expect(await provider()).toBe(first);
    expect(inputs).toEqual([{ RoleArn: ROLE.roleArn, RoleSessionName: 'snapline', DurationSeconds: 3600 }]);
  });

  it('renews within five minutes of the expiry', async () => {
    const clock = { ms: Date.UTC(2030, 0, 1) };
    const { sts, inputs } = fakeSts(clock);
    const provider = assumedRoleCredentials(sts, { ...ROLE, externalId: 'ext', sessionName: 'nightly', durationSeconds: 900 }, () => clock.ms);
    await provider();
    clock.ms += 56 * 60_000;
    expect((await provider()).accessKeyId).toBe('ASIA2');
    expect(inputs[1]).toEqual({ RoleArn: ROLE.roleArn, RoleSessionName: 'nightly', DurationSeconds: 900, ExternalId: 'ext' });
  });

  it('callers asking at the same time share one call', async () => {
    const clock = { ms: Date.UTC(2030, 0, 1) };
    const { sts, inputs } = fakeSts(clock);
    const provider = assumedRoleCredentials(sts, ROLE, () => clock.ms);
    const all = await Promise.all([provider(), provider(), provider()]);
    expect(new Set(all).size).toBe(1);
    expect(inputs).toHaveLength(1);
  });

  it('a failure names the role, is ACCESS_DENIED, and is not kept', async () => {
    const clock = { ms: Date.UTC(2030, 0, 1) };
    let failing = true;
    const { sts, inputs } = fakeSts(clock, () => failing);
    const provider = assumedRoleCredentials(sts, ROLE, () => clock.ms);
    const error = await provider().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SnaplineError);
    expect(error).toMatchObject({ code: ErrorCodes.ACCESS_DENIED });
    expect((error as SnaplineError).message).toContain(`cannot assume role ${ROLE.roleArn}`);
    failing = false;
    expect((await provider()).accessKeyId).toBe('ASIA2');
    expect(inputs).toHaveLength(2);
  });
});
