/** Local wall-clock time (evidence captions, CLI tables), in the given IANA time zone (default: the process's). */
export function formatLocal(ts: number, timeZone: string | undefined): string {
  const f = new Intl.DateTimeFormat('sv-SE', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    timeZoneName: 'short',
  });
  return f.format(new Date(ts));
}
