import { Transform, type TransformCallback } from 'node:stream';
import { AwsError } from './aws-error.js';

/** Longest chunk-size line or trailer line accepted (a size, a signature, a checksum). */
const MAX_LINE = 4096;

const malformed = (detail: string) => new AwsError(400, 'IncompleteBody', `The aws-chunked body is malformed: ${detail}.`);

/**
 * Decodes a `Content-Encoding: aws-chunked` body (x-amz-content-sha256
 * STREAMING-...): `HEX[;chunk-signature=SIG]\r\nDATA\r\n` chunks, a zero-size
 * chunk, then trailer lines (`x-amz-checksum-crc32:VALUE`) and an empty line.
 * Emits only the data. Chunk and trailer signatures are read, not checked
 * (the seed signature is the authenticator's business). Fails the stream with
 * AwsError IncompleteBody on malformed framing or a body that ends early.
 */
export class AwsChunkedDecoder extends Transform {
  /** Trailer headers by lower-case name, complete once the stream has ended. */
  readonly trailers = new Map<string, string>();
  /** Encoded bytes read, framing included. */
  rawBytes = 0;
  #state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  #line = '';
  #remaining = 0;
  #crlfSeen = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.rawBytes += chunk.length;
    try {
      this.#consume(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    callback(this.#state === 'done' ? undefined : malformed('it ends before the final chunk'));
  }

  #consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      switch (this.#state) {
        case 'data': {
          const take = Math.min(this.#remaining, chunk.length - at);
          this.push(chunk.subarray(at, at + take));
          at += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = 'data-end';
          break;
        }
        case 'data-end': {
          const expected = this.#crlfSeen === 0 ? 0x0d : 0x0a;
          if (chunk[at] !== expected) throw malformed('a chunk is longer than its size');
          at += 1;
          this.#crlfSeen += 1;
          if (this.#crlfSeen === 2) {
            this.#crlfSeen = 0;
            this.#state = 'size';
          }
          break;
        }
        case 'size':
        case 'trailer': {
          const newline = chunk.indexOf(0x0a, at);
          const end = newline < 0 ? chunk.length : newline;
          this.#line += chunk.toString('latin1', at, end);
          if (this.#line.length > MAX_LINE) throw malformed('a line is too long');
          at = end;
          if (newline < 0) break;
          at += 1;
          if (!this.#line.endsWith('\r')) throw malformed('a line does not end with CRLF');
          const line = this.#line.slice(0, -1);
          this.#line = '';
          if (this.#state === 'size') this.#onSizeLine(line);
          else this.#onTrailerLine(line);
          break;
        }
        case 'done':
          throw malformed('data follows the final chunk');
      }
    }
  }

  #onSizeLine(line: string): void {
    const hex = line.split(';', 1)[0]!.trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) throw malformed(`bad chunk size '${hex.slice(0, 20)}'`);
    this.#remaining = parseInt(hex, 16);
    this.#state = this.#remaining === 0 ? 'trailer' : 'data';
  }

  #onTrailerLine(line: string): void {
    if (line === '') {
      this.#state = 'done';
      return;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformed('a trailer line has no name');
    this.trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
}
