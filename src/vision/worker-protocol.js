import { openInferenceCore } from './detector.js';
import { ModelError } from './manifest.js';
/** Runs the inference core on this (worker) thread and answers `port`, one input at a time, in arrival order. */
export async function serveDetector(port, init) {
    const post = (msg, transfer = []) => port.postMessage(msg, transfer);
    let core;
    try {
        core = await openInferenceCore(init);
    }
    catch (err) {
        const e = err;
        post({ type: 'init-failed', message: e.message, modelError: e instanceof ModelError, ...(e instanceof ModelError && e.file !== undefined && { file: e.file }) });
        port.close();
        return;
    }
    const c = core;
    // session.run is synchronous, so inputs run strictly one after another; the chain only orders the answers.
    let chain = Promise.resolve();
    port.on('message', (msg) => {
        if (msg.type === 'close') {
            port.removeAllListeners('message');
            void chain.then(() => c.release()).finally(() => port.close());
            return;
        }
        const input = new Float32Array(msg.buffer, 0, msg.length);
        const timing = { preprocessMs: 0, inferenceMs: 0, postMs: 0 };
        chain = chain.then(() => c.infer(input, msg, msg.mapping, timing)).then((detections) => post({ type: 'result', id: msg.id, detections, timing, buffer: msg.buffer }, [msg.buffer]), (err) => post({ type: 'failed', id: msg.id, message: err.message, errorName: err.name, buffer: msg.buffer }, [msg.buffer]));
    });
    post({ type: 'ready', name: c.model.name, sha256: c.model.spec.sha256, inputWidth: c.inputWidth, inputHeight: c.inputHeight, preprocess: c.preprocess });
}
