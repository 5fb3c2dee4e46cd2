import { createHmac, timingSafeEqual } from 'node:crypto';

/** Block tokens live 7 days, page tokens (NextToken) 60 minutes, as on AWS (divided by the endpoint's time scale). */
export const BLOCK_TOKEN_LIFETIME_MS = 7 * 24 * 3600 * 1000;
export const PAGE_TOKEN_LIFETIME_MS = 60 * 60 * 1000;

const MAC_BYTES = 18;
const BLOCK_TOKEN_VERSION = 3;
const PAGE_TOKEN_VERSION = 4;
/** Expiry in epoch milliseconds (a scaled clock makes lifetimes shorter than a second). */
const EXPIRY_BYTES = 6;
const HEAD = 1 + EXPIRY_BYTES;

/** What a NextToken resumes: which listing, and the next block index. */
export interface PagePosition {
  /** 'blocks' for ListSnapshotBlocks, 'changed' for ListChangedBlocks. */
  listing: 'blocks' | 'changed';
  /** The snapshot ids the listing is about, e.g. "snap-a" or "snap-a..snap-b". */
  subject: string;
  nextIndex: number;
}

/**
 * Issues and checks the opaque tokens of the EBS direct APIs, HMAC-signed with
 * a secret kept in the data directory (so they survive a restart). Tokens are
 * standard base64, which fits the API's pattern ^[A-Za-z0-9+/=]+$.
 * Layout: version (1 byte), expiry in epoch milliseconds (6), payload, MAC.
 */
export class TokenSigner {
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    this.#secret = secret;
  }

  /** A token for reading `blockIndex` of `snapshotId`, valid until `expiresAtMs`. */
  blockToken(snapshotId: string, blockIndex: number, expiresAtMs: number): string {
    const head = Buffer.allocUnsafe(HEAD);
    head.writeUInt8(BLOCK_TOKEN_VERSION, 0);
    head.writeUIntBE(Math.floor(expiresAtMs), 1, EXPIRY_BYTES);
    return Buffer.concat([head, this.#mac(head, `block\n${snapshotId}\n${blockIndex}`)]).toString('base64');
  }

  /** True when `token` was issued for this block and has not expired at `nowMs`. */
  checkBlockToken(token: string, snapshotId: string, blockIndex: number, nowMs: number): boolean {
    const raw = Buffer.from(token, 'base64');
    if (raw.length !== HEAD + MAC_BYTES || raw[0] !== BLOCK_TOKEN_VERSION) return false;
    const head = raw.subarray(0, HEAD);
    if (raw.readUIntBE(1, EXPIRY_BYTES) <= nowMs) return false;
    return timingSafeEqual(raw.subarray(HEAD), this.#mac(head, `block\n${snapshotId}\n${blockIndex}`));
  }

  pageToken(position: PagePosition, expiresAtMs: number): string {
    const head = Buffer.allocUnsafe(HEAD + 4);
    head.writeUInt8(PAGE_TOKEN_VERSION, 0);
    head.writeUIntBE(Math.floor(expiresAtMs), 1, EXPIRY_BYTES);
    head.writeUInt32BE(position.nextIndex, HEAD);
    return Buffer.concat([head, this.#mac(head, `page\n${position.listing}\n${position.subject}`)]).toString('base64');
  }

  /** The next block index a page token resumes at, or undefined when it is foreign, forged or expired. */
  resumeIndex(token: string, listing: PagePosition['listing'], subject: string, nowMs: number): number | undefined {
    const raw = Buffer.from(token, 'base64');
    if (raw.length !== HEAD + 4 + MAC_BYTES || raw[0] !== PAGE_TOKEN_VERSION) return undefined;
    const head = raw.subarray(0, HEAD + 4);
    if (raw.readUIntBE(1, EXPIRY_BYTES) <= nowMs) return undefined;
    if (!timingSafeEqual(raw.subarray(HEAD + 4), this.#mac(head, `page\n${listing}\n${subject}`))) return undefined;
    return raw.readUInt32BE(HEAD);
  }

  #mac(head: Buffer, payload: string): Buffer {
    return createHmac('sha256', this.#secret).update(head).update(payload).digest().subarray(0, MAC_BYTES);
  }
}
