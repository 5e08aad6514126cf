const DAY_INDEX = { mon: 0, tue: 1, wed: 2, thu: 3, fri: 4, sat: 5, sun: 6 };
const formatters = new Map();
/** Weekday (0 = Monday) and minute of the day of `ts` on the wall clock of `timeZone`. */
export function localTime(ts, timeZone) {
    let f = formatters.get(timeZone);
    if (!f) {
        f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
        formatters.set(timeZone, f);
    }
    let day = 0;
    let hour = 0;
    let minute = 0;
    for (const part of f.formatToParts(ts)) {
        if (part.type === 'weekday')
            day = DAY_INDEX[part.value.slice(0, 3).toLowerCase()] ?? 0;
        else if (part.type === 'hour')
            hour = Number(part.value);
        else if (part.type === 'minute')
            minute = Number(part.value);
    }
    return { day, minute: hour * 60 + minute };
}
function minutes(hhmm) {
    return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}
/**
 * Whether `ts` falls in one of the windows, on the local clock of `timeZone`. A window is [from, to); one whose
 * `to` is earlier than its `from` runs past midnight, and its `days` name the day it opens on (a Friday 22:00–06:00
 * window covers Saturday 05:59). No windows means always.
 */
export function inSchedule(windows, ts, timeZone) {
    if (!windows)
        return true;
    const { day, minute } = localTime(ts, timeZone);
    const opensOn = (w, d) => !w.days || w.days.some((name) => DAY_INDEX[name] === d);
    return windows.some((w) => {
        const from = minutes(w.from);
        const to = minutes(w.to);
        if (from < to)
            return opensOn(w, day) && minute >= from && minute < to;
        return (opensOn(w, day) && minute >= from) || (opensOn(w, (day + 6) % 7) && minute < to);
    });
}
