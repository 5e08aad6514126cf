export const defaultBackoff = { initialMs: 1000, maxMs: 30_000 };
/**
 * Delay before retry number `attempt` (0-based): doubles per attempt up to the cap, then "equal jitter"
 * picks a point in the upper half so that gateways restarted together (power cut) spread out their
 * reconnects, while a retry never comes sooner than half the nominal delay.
 */
export function backoffDelay(attempt, opts, random = Math.random) {
    const nominal = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
    return Math.round(nominal / 2 + random() * (nominal / 2));
}
