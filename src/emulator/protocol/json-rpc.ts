import type { IncomingHttpHeaders } from 'node:http';
import { AwsError } from './aws-error.js';
import { readBody, send, type Exchange } from './http.js';

/**
 * The AWS JSON 1.1 protocol (ECS, CloudWatch Logs): POST / with
 * `X-Amz-Target: <ServicePrefix>.<Operation>` and a JSON body; answers are
 * JSON, errors carry their exception name in `__type` and in
 * x-amzn-ErrorType. Timestamps are epoch seconds (JSON numbers).
 */

const CONTENT_TYPE = 'application/x-amz-json-1.1';
/** Largest request body read: a full PutLogEvents batch (1 MiB counted) is larger once in JSON. */
const BODY_LIMIT = 4 * 1024 * 1024;

/** The operation named by X-Amz-Target when it starts with `prefix.`, else undefined. */
export function targetOperation(headers: IncomingHttpHeaders, prefix: string): string | undefined {
  const target = headers['x-amz-target'];
  if (typeof target !== 'string' || !target.startsWith(`${prefix}.`)) return undefined;
  return target.slice(prefix.length + 1);
}

/** The service prefix of an X-Amz-Target header ("AmazonEC2ContainerServiceV20141113"), if any. */
export function targetPrefix(headers: IncomingHttpHeaders): string | undefined {
  const target = headers['x-amz-target'];
  if (typeof target !== 'string') return undefined;
  const dot = target.indexOf('.');
  return dot < 0 ? undefined : target.slice(0, dot);
}

/** The request body as a JSON object; SerializationException when it is not one. */
export async function readJsonInput(exchange: Exchange): Promise<Record<string, unknown>> {
  const body = await readBody(exchange.req, exchange.stats, BODY_LIMIT);
  const text = body.toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AwsError(400, 'SerializationException', 'the request body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new AwsError(400, 'SerializationException', 'the request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}

export function sendJsonResult(exchange: Exchange, value: unknown): void {
  send(exchange, 200, { 'content-type': CONTENT_TYPE, 'x-amzn-requestid': exchange.requestId }, JSON.stringify(value));
}

/** An AwsError whose JSON answer carries more members than the message (ECS ConflictException's resourceIds). */
export class JsonMembersError extends AwsError {
  constructor(
    status: number,
    code: string,
    message: string,
    readonly members: Readonly<Record<string, unknown>>,
  ) {
    super(status, code, message);
  }
}

export function sendJsonError(exchange: Exchange, error: AwsError): void {
  const members = error instanceof JsonMembersError ? error.members : {};
  const body = JSON.stringify({ __type: error.code, message: error.message, ...members });
  send(exchange, error.status, { 'content-type': CONTENT_TYPE, 'x-amzn-requestid': exchange.requestId, 'x-amzn-errortype': error.code }, body);
}

/** Epoch milliseconds as the protocol's timestamp (epoch seconds). */
export function epochSeconds(ms: number): number {
  return ms / 1000;
}

/**
 * Reads fields of a JSON input, answering a wrong one with `errorCode`
 * (InvalidParameterException for both ECS and Logs) naming the field.
 */
export class InputReader {
  constructor(
    private readonly input: Record<string, unknown>,
    private readonly errorCode = 'InvalidParameterException',
  ) {}

  bad(message: string): AwsError {
    return new AwsError(400, this.errorCode, message);
  }

  string(field: string, options: { required?: boolean; max?: number; pattern?: RegExp } = {}): string | undefined {
    const value = this.input[field];
    if (value === undefined || value === null) {
      if (options.required) throw this.bad(`${field} is required`);
      return undefined;
    }
    if (typeof value !== 'string') throw this.bad(`${field} must be a string`);
    if (options.required && value === '') throw this.bad(`${field} must not be empty`);
    if (options.max !== undefined && value.length > options.max) throw this.bad(`${field} must be at most ${options.max} characters`);
    if (options.pattern !== undefined && !options.pattern.test(value)) throw this.bad(`${field} has characters that are not allowed: ${value}`);
    return value;
  }

  requiredString(field: string, options: { max?: number; pattern?: RegExp } = {}): string {
    return this.string(field, { ...options, required: true })!;
  }

  integer(field: string, min: number, max: number): number | undefined {
    const value = this.input[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw this.bad(`${field} must be an integer from ${min} to ${max}`);
    }
    return value;
  }

  boolean(field: string): boolean | undefined {
    const value = this.input[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') throw this.bad(`${field} must be true or false`);
    return value;
  }

  stringList(field: string, max = Infinity): string[] {
    const value = this.input[field];
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw this.bad(`${field} must be a list of strings`);
    if (value.length > max) throw this.bad(`${field} must have at most ${max} members`);
    return value as string[];
  }

  objectList(field: string, max = Infinity): Record<string, unknown>[] {
    const value = this.input[field];
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value) || !value.every((item) => item !== null && typeof item === 'object' && !Array.isArray(item))) {
      throw this.bad(`${field} must be a list of objects`);
    }
    if (value.length > max) throw this.bad(`${field} must have at most ${max} members`);
    return value as Record<string, unknown>[];
  }

  object(field: string): Record<string, unknown> | undefined {
    const value = this.input[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'object' || Array.isArray(value)) throw this.bad(`${field} must be an object`);
    return value as Record<string, unknown>;
  }

  /** The input's members other than `field`, as given. */
  without(field: string): Record<string, unknown> {
    return Object.fromEntries(Object.entries(this.input).filter(([name]) => name !== field));
  }

  /** A reader over a nested object (field path in messages stays the caller's business). */
  nested(value: Record<string, unknown>): InputReader {
    return new InputReader(value, this.errorCode);
  }
}
