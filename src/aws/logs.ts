import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import type { LogLine, LogReader } from '../core/ports.js';
import { ErrorCodes } from '../errors.js';
import { fromAwsError } from './errors.js';
import { logsSdk } from './sdk.js';

/** CloudWatch Logs streams read forward with GetLogEvents (the SDK's standard retry applies). */
export class CloudWatchLogReader implements LogReader {
  constructor(private readonly client: CloudWatchLogsClient) {}

  async readForward(group: string, stream: string, token: string | undefined): Promise<{ lines: LogLine[]; token: string | undefined; restarted?: boolean }> {
    let out;
    try {
      // A forward token is only taken with startFromHead true.
      out = await this.client.send(
        new (logsSdk().GetLogEventsCommand)({ logGroupName: group, logStreamName: stream, startFromHead: true, ...(token === undefined ? {} : { nextToken: token }) }),
      );
    } catch (err) {
      const error = fromAwsError(err, 'logs:GetLogEvents');
      // The awslogs driver creates the stream when the container starts: until then there is nothing to read.
      if (error.code === ErrorCodes.NOT_FOUND) return { lines: [], token };
      // A token expires 24 hours after it was given out (a quiet stream keeps answering the same one): start again from the head.
      if (token !== undefined && error.details?.awsError === 'InvalidParameterException') return { ...(await this.readForward(group, stream, undefined)), restarted: true };
      throw error;
    }
    return {
      lines: (out.events ?? []).map((e) => ({ timestamp: new Date(e.timestamp ?? 0), message: e.message ?? '' })),
      token: out.nextForwardToken ?? token,
    };
  }
}
