/** Zero bytes written where a target cannot make a range read as zeros otherwise (read-only: never written to). */
export const ZERO_CHUNK = Buffer.alloc(4 * 1024 * 1024);
