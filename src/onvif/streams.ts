import type { Profile } from './device.js';

/** Narrower than this, a detector sees too little (a 320×240 frame is the smallest worth analysing). */
export const MIN_DETECT_WIDTH = 320;

/** Wider than this, a stream is a main stream, not a sub-stream. */
export const MAX_SUB_WIDTH = 1280;

export interface StreamChoice {
  /** The stream to analyse: the smallest at least MIN_DETECT_WIDTH wide, H.264 preferred. */
  detect: Profile;
  /** The stream for evidence: the largest. */
  evidence: Profile;
}

const area = (p: Profile): number => (p.width ?? 0) * (p.height ?? 0);
const decodable = (p: Profile): boolean => p.encoding === 'H264' || p.encoding === 'H265';

/**
 * Picks the detection sub-stream and the evidence main stream from a camera's profiles; undefined when it has none.
 * Profiles that are not video we can decode (JPEG, MPEG4) are used only when nothing else is offered; profiles of
 * unknown size rank below any known size.
 */
export function chooseStreams(profiles: readonly Profile[]): StreamChoice | undefined {
  if (profiles.length === 0) return undefined;
  const video = profiles.filter(decodable);
  const pool = video.length > 0 ? video : [...profiles];
  const h264First = (a: Profile, b: Profile): number => Number(b.encoding === 'H264') - Number(a.encoding === 'H264');
  const evidence = [...pool].sort((a, b) => area(b) - area(a) || h264First(a, b))[0]!;
  const wide = pool.filter((p) => (p.width ?? 0) >= MIN_DETECT_WIDTH);
  // H.264 decodes cheapest, but not at any size: an H.264 main stream loses to an H.265 sub-stream.
  const h264Sub = wide.filter((p) => p.encoding === 'H264' && (p.width ?? 0) <= MAX_SUB_WIDTH);
  const candidates = h264Sub.length > 0 ? h264Sub : wide;
  const detect = candidates.length > 0 ? [...candidates].sort((a, b) => area(a) - area(b) || h264First(a, b))[0]! : evidence;
  return { detect, evidence };
}
