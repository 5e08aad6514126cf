/** Detections with their class renamed by `map`, for one camera; the detector's own list is left as it was. */
export function remapClasses(dets, map) {
    if (!map)
        return [...dets];
    return dets.map((d) => (Object.hasOwn(map, d.class) ? { ...d, class: map[d.class] } : d));
}
