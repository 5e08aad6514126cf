import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { OnvifError, seconds } from './errors.js';

export interface HttpAnswer {
  status: number;
  /** Every WWW-Authenticate header, each as sent. */
  challenges: string[];
  contentType: string;
  body: string;
}

export interface PostOptions {
  camera: string;
  timeoutMs: number;
  maxBytes: number;
  headers: Record<string, string>;
}

/**
 * One POST with a hard deadline over the whole exchange (connect, send, every byte of the answer) and a size cap;
 * it always settles, with the answer or an OnvifError: 'timeout', 'unreachable', or 'malformed' (too large).
 */
export function post(url: URL, body: string, opts: PostOptions): Promise<HttpAnswer> {
  const { camera, timeoutMs, maxBytes } = opts;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: OnvifError | undefined, answer?: HttpAnswer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      req.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const tooBig = (): OnvifError =>
      new OnvifError(
        'malformed',
        camera,
        `camera ${camera} sent an answer larger than ${maxBytes} bytes; aborted (check the address points at an ONVIF service)`,
      );
    const payload = Buffer.from(body, 'utf8');
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: 'POST', agent: false, headers: { ...opts.headers, 'Content-Length': String(payload.length), Connection: 'close' } },
      (res: IncomingMessage) => {
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBytes) return finish(tooBig());
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) return finish(tooBig());
          chunks.push(c);
        });
        const truncated = (): void =>
          finish(
            new OnvifError(
              'malformed',
              camera,
              `camera ${camera} sent a truncated answer (the connection closed after ${size} bytes); check the network and the camera`,
            ),
          );
        res.on('error', truncated);
        res.on('aborted', truncated);
        res.on('end', () => {
          const challenges: string[] = [];
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            if (res.rawHeaders[i]!.toLowerCase() === 'www-authenticate') challenges.push(res.rawHeaders[i + 1]!);
          }
          finish(undefined, {
            status: res.statusCode ?? 0,
            challenges,
            contentType: String(res.headers['content-type'] ?? ''),
            body: Buffer.concat(chunks).toString('utf8'),
          });
        });
      },
    );
    const timer = setTimeout(
      () =>
        finish(
          new OnvifError(
            'timeout',
            camera,
            `camera ${camera} did not answer within ${seconds(timeoutMs)} (check the address and that ONVIF is enabled)`,
          ),
        ),
      timeoutMs,
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'ECONNRESET' || e.message === 'socket hang up'
          ? 'closed the connection without answering'
          : e.code === 'ECONNREFUSED'
            ? 'refused the connection'
            : e.code === 'ENOTFOUND'
              ? 'has a name that does not resolve'
              : `cannot be reached (${e.code ?? e.message})`;
      finish(
        new OnvifError('unreachable', camera, `camera ${camera} ${why}; check the address, port and that ONVIF is enabled`, undefined, {
          cause: e,
        }),
      );
    });
    req.end(payload);
  });
}
