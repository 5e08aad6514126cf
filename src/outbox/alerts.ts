/**
 * The outbox's own alert events (alert.ts has their schema): a row of high priority on the gateway's stream,
 * outside the byte cap, written only when OutboxOptions.alerts is set. Drops are counted as they happen and
 * announced here at most once per interval, one alert summing up every drop since the last one.
 */
import { v7 as uuidv7 } from 'uuid';
import { gatewayTopics } from '../common/topics.js';
import { ALERT_SCHEMA_ID, type AlertKind, type AlertPayload } from './alert.js';
import { insertRow } from './enqueue.js';
import { sqliteCode } from './errors.js';
import type { RowStore } from './store.js';
import { GATEWAY_STREAM, type DropCount, type OutboxOptions } from './types.js';

export class Alerts {
  private lastAlertAt = -Infinity;

  constructor(
    private readonly store: RowStore,
    private readonly alerts: OutboxOptions['alerts'],
  ) {}

  /** Inside a transaction: writes an alert row, when alerts are configured. */
  add(kind: AlertKind, text: string, detail: Record<string, unknown>): void {
    const alerts = this.alerts;
    if (!alerts) return;
    const id = uuidv7();
    const at = new Date(this.store.now()).toISOString();
    insertRow(
      this.store,
      { id, cameraId: GATEWAY_STREAM, type: kind, topic: gatewayTopics(alerts.prefix, alerts.gatewayId).alert(kind), priority: 'high' },
      0,
      (_e, seq): AlertPayload => ({ schema: ALERT_SCHEMA_ID, id, seq, gatewayId: alerts.gatewayId, kind, at, message: text, detail }),
      // Exempt from the cap: an alert is small and rare (one per interval), and evicting for it would create
      // drops that only the next alert could announce.
      false,
    );
  }

  /** One alert per interval summarising drops not yet announced; returns true when it wrote one. */
  reportDropsIfDue(): boolean {
    if (!this.alerts) return false;
    const { store } = this;
    const now = store.now();
    if (now - this.lastAlertAt < (this.alerts.intervalMs ?? 60_000)) return false;
    let wrote: boolean;
    try {
      wrote = store.afterWrite(() => store.transaction(() => this.writeDropAlert()));
    } catch (err) {
      // The drops stay unreported and go into the next alert; the events that caused them are committed already.
      if (sqliteCode(err) !== 'SQLITE_FULL') throw err;
      store.log?.warn({ file: store.file }, `disk full under ${store.folder}: the outbox_drop alert is postponed until there is room`);
      return false;
    }
    if (wrote) this.lastAlertAt = now;
    return wrote;
  }

  /** Inside a transaction: one alert row for the drops not yet announced; false when there are none. */
  private writeDropAlert(): boolean {
    const { st } = this.store;
    const fresh = st.unreported.all() as DropCount[];
    if (fresh.length === 0) return false;
    const counters = st.stats.get() as { droppedEvents: number; droppedEvidence: number };
    const total = { events: counters.droppedEvents, evidence: counters.droppedEvidence };
    const events = fresh.filter((d) => d.what === 'event').reduce((n, d) => n + d.count, 0);
    const evidence = fresh.filter((d) => d.what === 'evidence').reduce((n, d) => n + d.count, 0);
    st.markReported.run();
    this.add('outbox_drop', `outbox dropped ${events} event(s) and ${evidence} evidence image(s) since the last alert`, {
      since: Number.isFinite(this.lastAlertAt) ? new Date(this.lastAlertAt).toISOString() : null,
      dropped: fresh.map(({ what, reason, priority, count }) => ({ what, reason, priority, count })),
      total,
    });
    return true;
  }
}
