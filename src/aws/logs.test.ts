import { CloudWatchLogsClient, CloudWatchLogsServiceException, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { CloudWatchLogReader } from './logs.js';

const client = new CloudWatchLogsClient({ region: 'eu-west-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
const logs = mockClient(client);
const reader = new CloudWatchLogReader(client);
beforeEach(() => logs.reset());
afterAll(() => client.destroy());

const logsError = (name: string, status: number) => new CloudWatchLogsServiceException({ name, $fault: status >= 500 ? 'server' : 'client', message: name, $metadata: { httpStatusCode: status } });

describe('CloudWatchLogReader.readForward', () => {
  it('reads from the head, then on from the forward token', async () => {
    logs.on(GetLogEventsCommand).resolves({ events: [{ timestamp: 1000, message: 'one' }], nextForwardToken: 'f/1', nextBackwardToken: 'b/0' });
    expect(await reader.readForward('/g', 'p/worker/t', undefined)).toEqual({ lines: [{ timestamp: new Date(1000), message: 'one' }], token: 'f/1' });
    await reader.readForward('/g', 'p/worker/t', 'f/1');
    expect(logs.commandCalls(GetLogEventsCommand).map((c) => c.args[0].input)).toEqual([
      { logGroupName: '/g', logStreamName: 'p/worker/t', startFromHead: true },
      { logGroupName: '/g', logStreamName: 'p/worker/t', startFromHead: true, nextToken: 'f/1' },
    ]);
  });

  it('a stream that does not exist yet reads as empty, the token unchanged', async () => {
    logs.on(GetLogEventsCommand).rejects(logsError('ResourceNotFoundException', 400));
    expect(await reader.readForward('/g', 's', 'f/7')).toEqual({ lines: [], token: 'f/7' });
  });

  it('a refused token (they expire after 24 hours) is dropped: the stream is read from its start again, restarted', async () => {
    logs
      .on(GetLogEventsCommand)
      .rejectsOnce(logsError('InvalidParameterException', 400))
      .resolvesOnce({ events: [{ timestamp: 1000, message: 'one' }], nextForwardToken: 'f/1', nextBackwardToken: 'b/0' });
    expect(await reader.readForward('/g', 's', 'f/old')).toEqual({ lines: [{ timestamp: new Date(1000), message: 'one' }], token: 'f/1', restarted: true });
    expect(logs.commandCalls(GetLogEventsCommand).map((c) => c.args[0].input.nextToken)).toEqual(['f/old', undefined]);
  });

  it('other failures are sorted and name logs:GetLogEvents', async () => {
    logs.on(GetLogEventsCommand).rejects(logsError('AccessDeniedException', 400));
    const err = await reader.readForward('/g', 's', undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SnaplineError);
    expect((err as SnaplineError).code).toBe(ErrorCodes.ACCESS_DENIED);
    expect((err as SnaplineError).message).toMatch(/logs:GetLogEvents/);
  });
});
