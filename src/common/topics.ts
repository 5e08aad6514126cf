/**
 * Every MQTT topic and filter the gateway uses, built from one prefix and one gateway id (docs/asyncapi.yaml,
 * docs/delivery.md). Publishers, the uplink's subscriptions, the outbox's alerts and the CLI take their topics
 * from here, so a topic is spelt in one place.
 */

/** One or more topic levels separated by '/', none empty, none with a wildcard or white space. */
export const TOPIC_PREFIX = /^[^/+#\s]+(\/[^/+#\s]+)*$/;

/** One topic level: not empty, no '/', no wildcard, no white space. */
const TOPIC_LEVEL = /^[^/+#\s]+$/;

export const TOPIC_PREFIX_RULE = "one or more topic levels separated by '/', without '+', '#', spaces, or a leading/trailing '/'";

/** Why `level` cannot be one topic level, or null when it can; `what` names it for the reader. */
export function topicLevelProblem(level: string, what: string): string | null {
  if (TOPIC_LEVEL.test(level)) return null;
  return `${what} ${JSON.stringify(level)} cannot be a topic level: it must not be empty or contain '/', '+', '#' or spaces`;
}

function level(value: string, what: string): string {
  const problem = topicLevelProblem(value, what);
  if (problem) throw new Error(`topics: ${problem}`);
  return value;
}

/** A request verb is one or two topic levels, `noun/action` (`camera/snapshot`) or one word. */
function verbLevels(verb: string): string {
  const levels = verb.split('/');
  if (levels.length > 2) throw new Error(`topics: request verb ${JSON.stringify(verb)} has more than two levels`);
  for (const l of levels) level(l, 'request verb');
  return verb;
}

export interface GatewayTopics {
  /** `{prefix}/{gatewayId}`: every topic below is under it. */
  readonly base: string;
  /** Up: event messages, `…/event/{type}`. */
  event(type: string): string;
  /** Up: an event's evidence image (or its parts), `…/evidence/{messageId}`. */
  evidence(messageId: string): string;
  /** Up, retained: the health message. */
  readonly health: string;
  /** Up, retained: online/offline; also the last will. */
  readonly availability: string;
  /** Up: alerts of the gateway itself, `…/alert/{kind}`. */
  alert(kind: string): string;
  /** Down: the task service's confirmations (delivery: service). */
  readonly ack: string;
  /** Down: one task, `…/task/{taskId}`. */
  task(taskId: string): string;
  /** Up: a task's state, `…/task/{taskId}/state`. */
  taskState(taskId: string): string;
  /** Filter for every task sent down, `…/task/+` (the state topics one level deeper do not match). */
  readonly tasks: string;
  /** Down: a request, `…/request/{verb}`; a verb is one or two levels (`camera/snapshot`). */
  request(verb: string): string;
  /** Filter for every request, `…/request/#`. */
  readonly requests: string;
  /** Up: the answer to a request, `…/response/{verb}`; a verb is one or two levels. */
  response(verb: string): string;
  /** The verb of a topic under `…/request/` (whatever its levels), or null for any other topic. */
  verbOf(topic: string): string | null;
  /** Whether a topic or filter lies under this gateway's own `{prefix}/{gatewayId}/`. */
  owns(topicOrFilter: string): boolean;
}

/** The topics of one gateway. Throws, naming the value, when the prefix or the id cannot be used in a topic. */
export function gatewayTopics(prefix: string, gatewayId: string): GatewayTopics {
  if (!TOPIC_PREFIX.test(prefix)) throw new Error(`topics: prefix ${JSON.stringify(prefix)} must be ${TOPIC_PREFIX_RULE}`);
  const base = `${prefix}/${level(gatewayId, 'gateway id')}`;
  return {
    base,
    event: (type) => `${base}/event/${level(type, 'event type')}`,
    evidence: (messageId) => `${base}/evidence/${level(messageId, 'evidence message id')}`,
    health: `${base}/health`,
    availability: `${base}/availability`,
    alert: (kind) => `${base}/alert/${level(kind, 'alert kind')}`,
    ack: `${base}/ack`,
    task: (taskId) => `${base}/task/${level(taskId, 'task id')}`,
    taskState: (taskId) => `${base}/task/${level(taskId, 'task id')}/state`,
    tasks: `${base}/task/+`,
    request: (verb) => `${base}/request/${verbLevels(verb)}`,
    requests: `${base}/request/#`,
    response: (verb) => `${base}/response/${verbLevels(verb)}`,
    verbOf: (topic) => (topic.startsWith(`${base}/request/`) ? topic.slice(base.length + '/request/'.length) : null),
    owns: (topicOrFilter) => topicOrFilter.startsWith(`${base}/`) && topicOrFilter.length > base.length + 1,
  };
}

/**
 * The topics of the gateway that published `topic`, an event, alert or evidence topic (`{prefix}/{gw}/event/{type}`,
 * …); null for any other topic. For subscribers that answer a gateway, such as `edgepatrol tail --ack`.
 */
export function senderTopics(topic: string): GatewayTopics | null {
  const m = /^(.+)\/([^/]+)\/(?:event|alert|evidence)\/[^/]+$/.exec(topic);
  if (!m || !TOPIC_PREFIX.test(m[1]!) || topicLevelProblem(m[2]!, 'gateway id')) return null;
  return gatewayTopics(m[1]!, m[2]!);
}

/** Why `filter` is not a valid MQTT topic filter, or null ('#' only as the last level, '+' only as a whole level). */
export function topicFilterProblem(filter: string): string | null {
  if (filter.length === 0) return 'a topic filter must not be empty';
  const levels = filter.split('/');
  for (const [i, l] of levels.entries()) {
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return `'#' must be a whole level and the last one in ${filter}`;
    if (l.includes('+') && l !== '+') return `'+' must be a whole level in ${filter}`;
  }
  return null;
}

/** Whether `topic` (no wildcards) matches the MQTT filter `filter`. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
