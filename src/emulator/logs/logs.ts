import { ACCOUNT_ID } from '../snapshots.js';
import { AwsError } from '../protocol/aws-error.js';
import type { Exchange } from '../protocol/http.js';
import { InputReader, readJsonInput, sendJsonResult } from '../protocol/json-rpc.js';

/** X-Amz-Target prefix of CloudWatch Logs. */
export const LOGS_TARGET_PREFIX = 'Logs_20140328';

/** GetLogEvents answers at most this many events and about this many bytes (26 bytes of overhead per event). */
const MAX_EVENTS = 10_000;
const MAX_RESPONSE_BYTES = 1_048_576;
const EVENT_OVERHEAD_BYTES = 26;
/** PutLogEvents: a batch is at most this many bytes (its messages in UTF-8 plus 26 bytes an event). */
const MAX_BATCH_BYTES = 1_048_576;
/** PutLogEvents: the events of a batch span at most 24 hours; events over 2 hours ahead or 14 days old are rejected, the others kept. */
const MAX_BATCH_SPAN_MS = 24 * 60 * 60 * 1000;
const MAX_AHEAD_MS = 2 * 60 * 60 * 1000;
const MAX_AGE_MS = 14 * 24 * 60 * 60 * 1000;
/** GetLogEvents tokens expire this long after they were given out. */
const TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

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
  constructor(
    private readonly store: LogStore,
    /** The clock of token expiry (epoch ms). */
    private readonly now: () => number = Date.now,
  ) {}

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

  /**
   * Up to 10,000 events of at most 1 MiB together (26 bytes an event
   * counted), in time order. Events over 2 hours ahead of now or over 14
   * days old are rejected (rejectedLogEventsInfo) and the others kept; the
   * kept ones span at most 24 hours.
   */
  #putLogEvents(input: InputReader) {
    const group = input.requiredString('logGroupName');
    const stream = input.requiredString('logStreamName');
    let bytes = 0;
    const events = input.objectList('logEvents', MAX_EVENTS).map((raw, n) => {
      const event = input.nested(raw);
      const timestamp = event.integer('timestamp', 0, Number.MAX_SAFE_INTEGER);
      const message = event.string('message', { required: true });
      if (timestamp === undefined) throw input.bad(`logEvents[${n}].timestamp is required`);
      bytes += Buffer.byteLength(message!) + EVENT_OVERHEAD_BYTES;
      return { timestamp, message: message! };
    });
    if (events.length === 0) throw input.bad('logEvents must hold at least one event');
    if (bytes > MAX_BATCH_BYTES) throw input.bad(`The batch is ${bytes} bytes (26 bytes an event counted); at most ${MAX_BATCH_BYTES} are allowed.`);
    for (let n = 1; n < events.length; n += 1) {
      if (events[n]!.timestamp < events[n - 1]!.timestamp) throw input.bad('Log events in a single PutLogEvents request must be in chronological order.');
    }
    const now = this.now();
    const tooOldEnd = events.findIndex((e) => e.timestamp >= now - MAX_AGE_MS);
    const tooNewStart = events.findIndex((e) => e.timestamp > now + MAX_AHEAD_MS);
    const keptFrom = tooOldEnd < 0 ? events.length : tooOldEnd;
    const kept = events.slice(keptFrom, tooNewStart < 0 ? events.length : tooNewStart);
    if (kept.length > 0 && kept.at(-1)!.timestamp - kept[0]!.timestamp > MAX_BATCH_SPAN_MS) throw input.bad('The log events in a batch cannot span more than 24 hours.');
    this.store.append(group, stream, kept);
    const rejected = {
      ...(keptFrom > 0 ? { tooOldLogEventEndIndex: keptFrom } : {}),
      ...(tooNewStart >= 0 ? { tooNewLogEventStartIndex: tooNewStart } : {}),
    };
    return Object.keys(rejected).length === 0 ? {} : { rejectedLogEventsInfo: rejected };
  }

  /**
   * Forward tokens (f/N/T) point after the Nth event, backward tokens
   * (b/N/T) before it; T is when the token was given out: 24 hours later it
   * is refused. A forward token needs startFromHead true. A read that finds
   * nothing new in its direction answers the token it was given, as AWS
   * does, so a follower sees "nothing new" by an unchanged token. Without a
   * token: the first events with startFromHead, else the last.
   */
  #getLogEvents(input: InputReader) {
    const group = groupNameOf(input);
    const events = this.store.read(group, input.requiredString('logStreamName'));
    const limit = input.integer('limit', 1, MAX_EVENTS) ?? MAX_EVENTS;
    const startTime = input.integer('startTime', 0, Number.MAX_SAFE_INTEGER);
    const endTime = input.integer('endTime', 0, Number.MAX_SAFE_INTEGER);
    const token = input.string('nextToken');
    const fromHead = input.boolean('startFromHead') === true;
    const inTime = (e: LogEvent) => (startTime === undefined || e.timestamp >= startTime) && (endTime === undefined || e.timestamp < endTime);
    const now = this.now();

    let from: number;
    let to: number;
    let unchanged: 'forward' | 'backward' | undefined;
    if (token !== undefined) {
      const parsed = /^([fb])\/(\d{1,15})\/(\d{1,15})$/.exec(token);
      const position = parsed === null ? Number.NaN : Number(parsed[2]);
      if (parsed === null || position > events.length) throw input.bad('The specified nextToken is invalid.');
      if (Number(parsed[3]) + TOKEN_TTL_MS <= now) throw input.bad('The specified nextToken has expired.');
      if (parsed[1] === 'f') {
        if (!fromHead) throw input.bad('A nextForwardToken can only be used with startFromHead set to true.');
        [from, to] = [position, forwardEnd(events, position, limit)];
        if (to === from) unchanged = 'forward';
      } else {
        [from, to] = [backwardStart(events, position, limit), position];
        if (to === from) unchanged = 'backward';
      }
    } else if (fromHead) {
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
      nextForwardToken: unchanged === 'forward' ? token : `f/${to}/${now}`,
      nextBackwardToken: unchanged === 'backward' ? token : `b/${from}/${now}`,
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

/** logGroupName, or the name inside logGroupIdentifier (a name or an ARN): one of the two, not both. */
function groupNameOf(input: InputReader): string {
  const identifier = input.string('logGroupIdentifier');
  const name = input.string('logGroupName');
  if ((identifier === undefined) === (name === undefined)) throw input.bad('Give either logGroupIdentifier or logGroupName, not both and not neither.');
  if (identifier !== undefined) return identifier.startsWith('arn:') ? (identifier.split(':log-group:')[1] ?? '').replace(/:\*$/, '') : identifier;
  return name!;
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

