import { ACCOUNT_ID } from './snapshots.js';
import { AwsError } from './aws-error.js';
import type { Exchange } from './http.js';
import { InputReader, readJsonInput, sendJsonResult } from './json-rpc.js';

/** X-Amz-Target prefix of CloudWatch Logs. */
export const LOGS_TARGET_PREFIX = 'Logs_20140328';

/** GetLogEvents answers at most this many events and about this many bytes (26 bytes of overhead per event). */
const MAX_EVENTS = 10_000;
const MAX_RESPONSE_BYTES = 1_048_576;
const EVENT_OVERHEAD_BYTES = 26;
/** AWS's limits on one log event's message. */
const MAX_MESSAGE_BYTES = 262_144 - EVENT_OVERHEAD_BYTES;

interface LogEvent {
  timestamp: number;
  message: string;
  ingestionTime: number;
  /** When GetLogEvents starts showing it (ingestion lag of the awslogs driver). */
  visibleAt: number;
}

interface LogStream {
  name: string;
  creationTime: number;
  events: LogEvent[];
}

interface LogGroup {
  name: string;
  creationTime: number;
  streams: Map<string, LogStream>;
}

const NAME = /^[.\-_/#A-Za-z0-9]{1,512}$/;
const STREAM_NAME = /^[^:*]{1,512}$/;

const notFound = (what: string) => new AwsError(400, 'ResourceNotFoundException', `The specified ${what} does not exist.`);

/**
 * CloudWatch Logs groups, streams and events, in memory (they end with the
 * endpoint). Events appended by the task runner become visible after a lag,
 * as with the awslogs driver, so a reader that stops when a task stops
 * misses its last lines.
 */
export class LogStore {
  readonly #groups = new Map<string, LogGroup>();

  constructor(private readonly now: () => number = Date.now) {}

  createGroup(name: string): void {
    if (this.#groups.has(name)) throw new AwsError(400, 'ResourceAlreadyExistsException', 'The specified log group already exists');
    this.#groups.set(name, { name, creationTime: this.now(), streams: new Map() });
  }

  hasGroup(name: string): boolean {
    return this.#groups.has(name);
  }

  createStream(groupName: string, streamName: string): void {
    const group = this.#group(groupName);
    if (group.streams.has(streamName)) throw new AwsError(400, 'ResourceAlreadyExistsException', 'The specified log stream already exists');
    group.streams.set(streamName, { name: streamName, creationTime: this.now(), events: [] });
  }

  /** Appends events (already in time order), visible `lagMs` from now. */
  append(groupName: string, streamName: string, events: ReadonlyArray<{ timestamp: number; message: string }>, lagMs = 0): void {
    const stream = this.#stream(groupName, streamName);
    const now = this.now();
    for (const event of events) {
      stream.events.push({ timestamp: event.timestamp, message: event.message, ingestionTime: now + lagMs, visibleAt: now + lagMs });
    }
  }

  /** GetLogEvents over the visible prefix of the stream (see getEvents in the API below). */
  read(groupName: string, streamName: string): LogEvent[] {
    const stream = this.#stream(groupName, streamName);
    const now = this.now();
    let visible = 0;
    while (visible < stream.events.length && stream.events[visible]!.visibleAt <= now) visible += 1;
    return stream.events.slice(0, visible);
  }

  streams(groupName: string): LogStream[] {
    return [...this.#group(groupName).streams.values()];
  }

  #group(name: string): LogGroup {
    const group = this.#groups.get(name);
    if (group === undefined) throw notFound('log group');
    return group;
  }

  #stream(groupName: string, streamName: string): LogStream {
    const stream = this.#group(groupName).streams.get(streamName);
    if (stream === undefined) throw notFound('log stream');
    return stream;
  }
}

/** The subset of CloudWatch Logs that snapline's ECS driver and tasks use. Handlers throw AwsError. */
export class LogsApi {
  constructor(private readonly store: LogStore) {}

  async handle(operation: string, exchange: Exchange): Promise<void> {
    const input = new InputReader(await readJsonInput(exchange));
    switch (operation) {
      case 'CreateLogGroup':
        this.store.createGroup(input.requiredString('logGroupName', { pattern: NAME }));
        return sendJsonResult(exchange, {});
      case 'CreateLogStream':
        this.store.createStream(input.requiredString('logGroupName', { pattern: NAME }), input.requiredString('logStreamName', { pattern: STREAM_NAME }));
        return sendJsonResult(exchange, {});
      case 'PutLogEvents':
        return sendJsonResult(exchange, this.#putLogEvents(input));
      case 'GetLogEvents':
        return sendJsonResult(exchange, this.#getLogEvents(input));
      case 'DescribeLogStreams':
        return sendJsonResult(exchange, this.#describeLogStreams(input, exchange.region));
      default:
        throw new AwsError(400, 'UnknownOperationException', `The local endpoint does not implement CloudWatch Logs ${operation || '(no X-Amz-Target)'}.`);
    }
  }

  #putLogEvents(input: InputReader) {
    const group = groupNameOf(input);
    const stream = input.requiredString('logStreamName');
    const events = input.objectList('logEvents', MAX_EVENTS).map((raw, n) => {
      const event = input.nested(raw);
      const timestamp = event.integer('timestamp', 0, Number.MAX_SAFE_INTEGER);
      const message = event.string('message', { required: true });
      if (timestamp === undefined) throw input.bad(`logEvents[${n}].timestamp is required`);
      if (Buffer.byteLength(message!) > MAX_MESSAGE_BYTES) throw input.bad(`logEvents[${n}].message is longer than ${MAX_MESSAGE_BYTES} bytes`);
      return { timestamp, message: message! };
    });
    if (events.length === 0) throw input.bad('logEvents must hold at least one event');
    for (let n = 1; n < events.length; n += 1) {
      if (events[n]!.timestamp < events[n - 1]!.timestamp) throw input.bad('Log events in a single PutLogEvents request must be in chronological order.');
    }
    this.store.append(group, stream, events);
    return {};
  }

  /**
   * Forward tokens (f/N) point after the Nth event, backward tokens (b/N)
   * before it. A forward read at the end of the stream answers the token it
   * was given, as AWS does, so a follower sees "nothing new" by an unchanged
   * token. Without a token: the first events with startFromHead, else the last.
   */
  #getLogEvents(input: InputReader) {
    const events = this.store.read(groupNameOf(input), input.requiredString('logStreamName'));
    const limit = input.integer('limit', 1, MAX_EVENTS) ?? MAX_EVENTS;
    const startTime = input.integer('startTime', 0, Number.MAX_SAFE_INTEGER);
    const endTime = input.integer('endTime', 0, Number.MAX_SAFE_INTEGER);
    const token = input.string('nextToken');
    const inTime = (e: LogEvent) => (startTime === undefined || e.timestamp >= startTime) && (endTime === undefined || e.timestamp < endTime);

    let from: number;
    let to: number;
    if (token !== undefined) {
      const parsed = /^([fb])\/(\d{1,15})$/.exec(token);
      const position = parsed === null ? Number.NaN : Number(parsed[2]);
      if (parsed === null || position > events.length) throw input.bad('The specified nextToken is invalid.');
      if (parsed[1] === 'f') [from, to] = [position, forwardEnd(events, position, limit)];
      else [from, to] = [backwardStart(events, position, limit), position];
    } else if (input.boolean('startFromHead') === true) {
      const first = events.findIndex(inTime);
      from = first < 0 ? events.length : first;
      to = forwardEnd(events, from, limit);
    } else {
      to = events.length;
      from = backwardStart(events, to, limit);
    }
    const chosen = events.slice(from, to).filter(inTime);
    return {
      events: chosen.map((e) => ({ timestamp: e.timestamp, message: e.message, ingestionTime: e.ingestionTime })),
      nextForwardToken: `f/${to}`,
      nextBackwardToken: `b/${from}`,
    };
  }

  #describeLogStreams(input: InputReader, region: string) {
    const group = groupNameOf(input);
    const prefix = input.string('logStreamNamePrefix');
    const orderBy = input.string('orderBy') ?? 'LogStreamName';
    if (orderBy !== 'LogStreamName' && orderBy !== 'LastEventTime') throw input.bad('orderBy must be LogStreamName or LastEventTime');
    if (orderBy === 'LastEventTime' && prefix !== undefined) throw input.bad('Cannot order by LastEventTime with a logStreamNamePrefix.');
    const limit = input.integer('limit', 1, 50) ?? 50;
    const start = Number(input.string('nextToken') ?? '0');
    if (!Number.isInteger(start) || start < 0) throw input.bad('The specified nextToken is invalid.');
    const lastEventOf = (s: { events: LogEvent[] }) => s.events.at(-1)?.timestamp ?? 0;
    const streams = this.store
      .streams(group)
      .filter((s) => prefix === undefined || s.name.startsWith(prefix))
      .sort((a, b) => (orderBy === 'LogStreamName' ? a.name.localeCompare(b.name) : lastEventOf(a) - lastEventOf(b)));
    if (input.boolean('descending') === true) streams.reverse();
    const page = streams.slice(start, start + limit);
    return {
      logStreams: page.map((s) => ({
        logStreamName: s.name,
        creationTime: s.creationTime,
        ...(s.events.length === 0
          ? {}
          : { firstEventTimestamp: s.events[0]!.timestamp, lastEventTimestamp: lastEventOf(s), lastIngestionTime: s.events.at(-1)!.ingestionTime }),
        arn: `arn:aws:logs:${region}:${ACCOUNT_ID}:log-group:${group}:log-stream:${s.name}`,
        storedBytes: 0,
      })),
      ...(start + limit < streams.length ? { nextToken: String(start + limit) } : {}),
    };
  }
}

/** logGroupName, or the name inside logGroupIdentifier (a name or an ARN). */
function groupNameOf(input: InputReader): string {
  const identifier = input.string('logGroupIdentifier');
  if (identifier !== undefined) return identifier.startsWith('arn:') ? (identifier.split(':log-group:')[1] ?? '').replace(/:\*$/, '') : identifier;
  return input.requiredString('logGroupName');
}

/** End of a forward page from `from`: at most `limit` events and about a megabyte. */
function forwardEnd(events: readonly LogEvent[], from: number, limit: number): number {
  let bytes = 0;
  let to = from;
  while (to < events.length && to - from < limit) {
    bytes += Buffer.byteLength(events[to]!.message) + EVENT_OVERHEAD_BYTES;
    if (bytes > MAX_RESPONSE_BYTES && to > from) break;
    to += 1;
  }
  return to;
}

/** Start of a backward page ending at `to`. */
function backwardStart(events: readonly LogEvent[], to: number, limit: number): number {
  let bytes = 0;
  let from = to;
  while (from > 0 && to - from < limit) {
    bytes += Buffer.byteLength(events[from - 1]!.message) + EVENT_OVERHEAD_BYTES;
    if (bytes > MAX_RESPONSE_BYTES && from < to) break;
    from -= 1;
  }
  return from;
}

