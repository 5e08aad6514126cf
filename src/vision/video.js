import { spawn } from 'node:child_process';
import { once } from 'node:events';
export class VideoError extends Error {
    name = 'VideoError';
}
function run(cmd, args) {
    return new Promise((resolveRun, reject) => {
        const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
        child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
        child.on('error', (err) => reject(new VideoError(`cannot start ${cmd}: ${err.message}; install Debian's ffmpeg (scripts/setup.sh)`)));
        child.on('close', (code) => resolveRun({ code, stdout, stderr }));
    });
}
/** Width and height of the first video stream, from ffprobe (part of Debian's ffmpeg). */
export async function probeVideo(file) {
    const { code, stdout, stderr } = await run('ffprobe', [
        '-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height:format=duration', '-of', 'json', file,
    ]);
    const info = code === 0 ? JSON.parse(stdout) : undefined;
    const stream = info?.streams?.[0];
    if (!stream?.width || !stream.height) {
        throw new VideoError(`${file} is not a readable video${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ' (no video stream)'}`);
    }
    const duration = Number(info?.format?.duration);
    return { width: stream.width, height: stream.height, ...(duration > 0 ? { duration } : {}) };
}
/**
 * Decodes a video file with ffmpeg into RGB24 frames at its own size, sampled at `fps`. Each frame has
 * its own buffer (the caller may keep it). Leaving the loop early kills ffmpeg; a failing ffmpeg throws
 * with the last line it printed.
 */
export async function* readVideoFrames(file, opts) {
    if (!(opts.fps > 0))
        throw new RangeError(`fps must be > 0, got ${opts.fps}`);
    const { width, height } = await probeVideo(file);
    const frameBytes = width * height * 3;
    const startTs = opts.startTs ?? Date.now();
    const start = opts.start ?? 0;
    if (!(start >= 0) || (opts.end !== undefined && !(opts.end > start)))
        throw new RangeError(`need 0 <= start < end, got start ${start}, end ${opts.end}`);
    // -ss before -i seeks by decoding from the previous keyframe, so the first frame is the one at `start`.
    const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-ss', String(start), '-i', file, '-an', '-sn'];
    if (opts.end !== undefined)
        args.push('-t', String(opts.end - start));
    args.push('-vf', `fps=${opts.fps}`);
    if (opts.maxFrames !== undefined)
        args.push('-frames:v', String(opts.maxFrames));
    args.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
    const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const spawnError = new Promise((_, reject) => {
        child.once('error', (err) => reject(new VideoError(`cannot start ffmpeg: ${err.message}; install Debian's ffmpeg (scripts/setup.sh)`)));
    });
    spawnError.catch(() => undefined);
    const exited = once(child, 'close');
    let frame = Buffer.allocUnsafe(frameBytes);
    let filled = 0;
    let index = 0;
    let finished = false;
    try {
        for await (const chunk of child.stdout) {
            let off = 0;
            while (off < chunk.length) {
                const n = Math.min(frameBytes - filled, chunk.length - off);
                chunk.copy(frame, filled, off, off + n);
                filled += n;
                off += n;
                if (filled === frameBytes) {
                    const time = start + index / opts.fps;
                    yield { width, height, data: frame, ts: startTs + time * 1000, index, time };
                    index++;
                    frame = Buffer.allocUnsafe(frameBytes);
                    filled = 0;
                }
            }
        }
        const [code, signal] = await Promise.race([exited, spawnError]);
        finished = true;
        if (code !== 0) {
            const last = stderr.trim().split('\n').pop();
            throw new VideoError(`ffmpeg failed on ${file} (${signal ?? `exit code ${code}`})${last ? `: ${last}` : ''}`);
        }
    }
    finally {
        if (!finished && child.exitCode === null && child.signalCode === null) {
            child.kill('SIGKILL');
            await exited;
        }
    }
}
