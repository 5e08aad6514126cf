/**
 * The mutation corpus shared by test/onvif-fuzz.test.ts and bench/onvif-clients.ts: case i targets one operation
 * and answers it with one mutation (seeded, so the same 500 answers every run). The camera serves case i under the
 * path prefix /m/<i>, so cases can run concurrently against one server; every other action gets its good answer.
 */
import { fixture, type Reply, render, startAnswerCamera, type AnswerCamera } from './onvif-answers.js';
import { MUTATIONS, type MutationKind, mutate, prng } from './onvif-mutate.js';

export const CORPUS_SEED = 16;
export const OPS = [
  'GetSystemDateAndTime',
  'GetDeviceInformation',
  'GetServices',
  'GetProfiles',
  'GetStreamUri',
  'GetStatus',
  'GetPresets',
] as const;
export type Op = (typeof OPS)[number];

const GOOD: Record<string, string> = {
  GetSystemDateAndTime: 'GetSystemDateAndTime.hikvision.xml',
  GetDeviceInformation: 'GetDeviceInformation.dahua.xml',
  GetServices: 'GetServices.hanwha.xml',
  GetCapabilities: 'GetCapabilities.nat.xml',
  GetProfiles: 'GetProfiles.hikvision.xml',
  GetStreamUri: 'GetStreamUri.hikvision.xml',
  GetSnapshotUri: 'GetSnapshotUri.uniview.xml',
  GetStatus: 'GetStatus.full.xml',
  GetPresets: 'GetPresets.hikvision.xml',
};

export interface CorpusCase {
  index: number;
  op: Op;
  kind: MutationKind;
  reply: Reply;
}

/** The n cases: op cycles fastest, the mutation kind next, the PRNG shapes each mutation. */
export function corpus(n: number, port: number, seed = CORPUS_SEED): CorpusCase[] {
  const rnd = prng(seed);
  const out: CorpusCase[] = [];
  for (let i = 0; i < n; i++) {
    const op = OPS[i % OPS.length]!;
    const kind = MUTATIONS[Math.floor(i / OPS.length) % MUTATIONS.length]!;
    const good = goodAnswer(op, port, `/m/${i}`);
    out.push({ index: i, op, kind, reply: mutate(good, rnd, kind).reply });
  }
  return out;
}

function goodAnswer(action: string, port: number, prefix: string): string {
  const b = { answers: {}, values: { PORT: port } };
  return render(fixture(GOOD[action]!), b, port).replace(/(:\d+)\/onvif\//g, `$1${prefix}/onvif/`);
}

/** The camera serving a corpus: case i's op gets its mutated answer under /m/<i>/, all else the good one. */
export async function startCorpusCamera(cases: () => CorpusCase[]): Promise<AnswerCamera> {
  const answers: Record<string, (ctx: { path: string }) => Reply> = {};
  for (const action of Object.keys(GOOD)) {
    answers[action] = ({ path }) => {
      const m = /^\/m\/(\d+)\//.exec(path);
      const c = m ? cases()[Number(m[1])] : undefined;
      if (c && c.op === action) return c.reply;
      return goodAnswer(action, cam.port, m ? `/m/${m[1]}` : '');
    };
  }
  const cam: AnswerCamera = await startAnswerCamera({ auth: 'none', answers });
  return cam;
}
