export interface BackoffOptions {
  /** Delay before the first retry. */
  initialMs: number;
  /** Cap: no retry waits longer than this. */
  maxMs: number;
}

export const defaultBackoff: BackoffOptions = { initialMs: 1000, maxMs: 30_000 };

/**
 * Delay before retry number `attempt` (0-based): doubles per attempt up to the cap, then "equal jitter"
 * picks a point in the upper half so that gateways restarted together (power cut) spread out their
 * reconnects, while a retry never comes sooner than half the nominal delay.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const nominal = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(nominal / 2 + random() * (nominal / 2));
}
