/** Durations as people write them: 90m, 26h, 1d12h, 1w (units s, m, h, d, w; at least one). */

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(?:\d+[smhdw])+$/;

/** Milliseconds of `text`, or undefined when it is not a duration above zero. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase();
  if (!DURATION.test(trimmed)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+)([smhdw])/g)) ms += Number(amount) * UNIT_MS[unit!]!;
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined;
}

/** `ms` in the largest whole units, as parseDuration reads it back: 26h, 1d12h, 45s. */
export function formatDurationText(ms: number): string {
  let left = Math.round(ms / 1000) * 1000;
  const parts: string[] = [];
  for (const unit of ['w', 'd', 'h', 'm', 's']) {
    const size = UNIT_MS[unit]!;
    if (left >= size) {
      parts.push(`${Math.floor(left / size)}${unit}`);
      left %= size;
    }
  }
  return parts.length === 0 ? '0s' : parts.join('');
}
