import { fromAwsError } from './errors.js';

/** Reads a streamed answer whole; a connection that breaks mid-body is UNAVAILABLE (retryable). */
export async function readBody(body: unknown, action: string): Promise<Buffer> {
  if (body === undefined || body === null) return Buffer.alloc(0);
  try {
    const bytes = await (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  } catch (err) {
    throw fromAwsError(err, action);
  }
}
