import type { Detection } from './types.js';

/** Model class name → the name a camera's rules see (e.g. motorcycle → ebike_candidate); unlisted names pass unchanged. */
export type ClassMap = Readonly<Record<string, string>>;

/** Detections with their class renamed by `map`, for one camera; the detector's own list is left as it was. */
export function remapClasses(dets: readonly Detection[], map: ClassMap | undefined): Detection[] {
  if (!map) return [...dets];
  return dets.map((d) => (Object.hasOwn(map, d.class) ? { ...d, class: map[d.class]! } : d));
}
