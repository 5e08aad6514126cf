import { basename } from 'node:path';
import type { Component, ComponentContext } from '../agent/index.js';
import { pruneEvidence } from '../evidence/store.js';

/** Retention runs at most this often: listing the evidence folder costs more than one event. */
export const PRUNE_INTERVAL_MS = 60_000;

/**
 * Evidence retention: after a stored event, at most every PRUNE_INTERVAL_MS, deletes evidence beyond
 * evidence.maxAgeDays and evidence.maxBytes, keeping that of messages the uplink has not delivered.
 */
export class EvidenceRetention implements Component {
  readonly name = 'evidence-retention';
  private lastPrune = Number.NEGATIVE_INFINITY;

  /** `now`: the clock (default Date.now). */
  constructor(private readonly now: () => number = Date.now) {}

  start(ctx: ComponentContext): void {
    ctx.bus.on('event.stored', () => this.pruneIfDue(ctx));
  }

  stop(): void {}

  private pruneIfDue({ outbox, config, dataDir, log }: ComponentContext): void {
    const now = this.now();
    if (now - this.lastPrune < PRUNE_INTERVAL_MS) return;
    this.lastPrune = now;
    try {
      const undelivered = new Set(
        [...outbox.list({ state: 'pending', limit: 1_000_000 }), ...outbox.list({ state: 'sent', limit: 1_000_000 })].map((r) => r.id),
      );
      const keep = (file: string): boolean => undelivered.has(basename(file).replace(/-(annotated|clean|reference)\.jpg$/, ''));
      const removed = pruneEvidence(dataDir, { maxBytes: config.evidence.maxBytes, maxAgeDays: config.evidence.maxAgeDays, now, keep });
      if (removed.files)
        log.info(
          { files: removed.files, bytes: removed.bytes, keptBytes: removed.keptBytes },
          `evidence retention deleted ${removed.files} files`,
        );
    } catch (err) {
      log.warn({ err }, `evidence retention in ${dataDir}/evidence failed; old images stay until the next try`);
    }
  }
}
