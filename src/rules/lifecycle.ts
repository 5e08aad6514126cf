import type { RuleConfig, ZoneConfig } from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import type { Observation } from './observe.js';
import { sortBySight, type EndReason, type EventState, type RuleHit } from './hit.js';

/**
 * The life of one rule's violations: one event while the rule holds, with a stable id. `started` when the rule
 * holds (in schedule, and `cooldownSeconds` after the previous event ended); `updated` at most every
 * `updateMinutes` while it holds; `ended` once it has not held for `endSeconds` (short gaps, such as a missed
 * detection or a passer-by covering the scene, do not split one violation in two), or when the schedule window
 * closes. Pure apart from the id generator it is given.
 *
 * Each message describes its own frame, whose live tracks (`tracks`) come with it: the violation's objects the
 * detector found in that frame are its `objects`, those it did not (hidden, missed, gone) are `unseen`.
 */
export class Lifecycle {
  private active: Active | null = null;
  private lastEnd = Number.NEGATIVE_INFINITY;
  private lastInstant = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly zone: ZoneConfig,
    private readonly rule: RuleConfig,
    private readonly newId: () => string,
    /** The view (PTZ preset id) the rule belongs to; undefined for the camera's own view. */
    private readonly view?: string,
  ) {}

  /** The open violation's event id, if one is open. */
  get openEvent(): string | undefined {
    return this.active?.eventId;
  }

  /** The zone and rule this lifecycle is of. */
  get where(): { zoneId: string; ruleId: string } {
    return { zoneId: this.zone.id, ruleId: this.rule.id };
  }

  /** Feeds one frame's observation and live tracks; returns the message this frame makes, if any. */
  step(ts: number, tracks: readonly Track[], obs: Observation, scheduled: boolean, extra: Extra = {}): RuleHit | null {
    const a = this.active;
    if (a) {
      if (obs.holds && scheduled) {
        a.lastHeld = ts;
        a.subjects = obs.subjects;
        a.extra = extra;
        if (ts - a.lastMessage < this.rule.updateMinutes * 60_000) return null;
        a.lastMessage = ts;
        return this.hit('updated', a.eventId, a.startedAt, ts, a.subjects, tracks, extra);
      }
      if (scheduled && ts - a.lastHeld < this.rule.endSeconds * 1000) return null;
      return this.end(a, ts, tracks, scheduled ? 'cleared' : 'schedule');
    }
    if (!obs.holds || !scheduled || ts - this.lastEnd < this.rule.cooldownSeconds * 1000) return null;
    const eventId = this.newId();
    this.active = { eventId, startedAt: obs.since, lastHeld: ts, lastMessage: ts, subjects: obs.subjects, extra };
    return this.hit('started', eventId, obs.since, ts, obs.subjects, tracks, extra);
  }

  /**
   * Ends the open violation, if there is one, for a reason outside the rule (the agent stops, the view changes, the
   * camera is paused); `tracks` are those of the last frame, the one its evidence shows. The lifecycle is not used after it.
   */
  close(ts: number, tracks: readonly Track[], endReason: EndReason): RuleHit | null {
    return this.active ? this.end(this.active, ts, tracks, endReason) : null;
  }

  /** The subjects of the last frame the rule held, as the frame of `tracks` shows them: still there, or unseen. */
  private end(a: Active, ts: number, tracks: readonly Track[], endReason: EndReason): RuleHit {
    this.active = null;
    this.lastEnd = ts;
    return {
      ...this.hit('ended', a.eventId, a.startedAt, ts, a.subjects, tracks, a.extra),
      endedAt: a.lastHeld,
      dwellSeconds: (a.lastHeld - a.startedAt) / 1000,
      endReason,
    };
  }

  /** A violation that is one moment (a line crossing): one `instant` message, at most one per cooldown. */
  instant(ts: number, tracks: readonly Track[], subjects: readonly Track[], scheduled: boolean, extra: Extra = {}): RuleHit | null {
    if (!scheduled || ts - this.lastInstant < this.rule.cooldownSeconds * 1000) return null;
    this.lastInstant = ts;
    return this.hit('instant', this.newId(), ts, ts, subjects, tracks, extra);
  }

  private hit(
    state: EventState,
    eventId: string,
    startedAt: number,
    ts: number,
    subjects: readonly Track[],
    tracks: readonly Track[],
    extra: Extra,
  ): RuleHit {
    return {
      eventId,
      state,
      eventType: this.rule.type,
      ...(this.rule.preset !== undefined && { preset: this.rule.preset }),
      ...(this.view !== undefined && { view: this.view }),
      rule: this.rule.kind,
      ruleId: this.rule.id,
      zoneId: this.zone.id,
      startedAt,
      ts,
      dwellSeconds: (ts - startedAt) / 1000,
      ...sortBySight(subjects, tracks),
      ...extra,
    };
  }
}

/** The open violation. */
interface Active {
  eventId: string;
  startedAt: number;
  lastHeld: number;
  lastMessage: number;
  subjects: Track[];
  extra: Extra;
}

/** Kind-specific facts carried by every message of the event. */
export type Extra = Pick<RuleHit, 'counts' | 'change'>;
