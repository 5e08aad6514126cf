import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { root, runCli, edgepatrol } from './helpers/agent.js';
import { startMosquitto, tempDirFor } from './helpers/mosquitto.js';
import { startRtspServer } from './helpers/rtsp.js';
import { startOnvifSim } from './fixtures/onvif-sim/server.js';

interface Step {
  command: string;
  shown: string[];
}

/** The `$ ` lines of the guide's ```console blocks, each with the output lines shown under it. */
export function guideSteps(markdown: string): Step[] {
  const steps: Step[] = [];
  for (const block of markdown.matchAll(/```console\n([\s\S]*?)```/g)) {
    for (const line of block[1]!.split('\n')) {
      if (line.startsWith('$ ')) steps.push({ command: line.slice(2).trim(), shown: [] });
      else if (line.trim() && steps.length) steps.at(-1)!.shown.push(line);
    }
  }
  return steps;
}

/** Splits a command line into words: "quoted words" stay one; ~ is not expanded (the substitutions handle it). */
function words(command: string): string[] {
  return [...command.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

/**
 * The first two words of an output line (e.g. "ok ffmpeg", "added camera", "detection 320×240"), with what differs
 * between the site and the test (addresses, interfaces, paths, topics) written as placeholders.
 */
function lead(line: string): string {
  return line
    .trim()
    .split(/\s+/)
    .slice(0, 2)
    .map((w) =>
      /\d+\.\d+\.\d+\.\d+/.test(w) || /^(eth|enp|eno|wlan)\w*$/.test(w)
        ? 'ADDR'
        : w.includes('/') || /\.(jpg|yaml|db)$/.test(w)
          ? 'PATH'
          : /^\d+$/.test(w)
            ? 'N'
            : w.slice(0, 24),
    )
    .join(' ');
}

const guide = readFileSync(join(root, 'docs', 'field-guide.md'), 'utf8');

t.test("the field guide's path, command by command, to the first event", async (t) => {
  const steps = guideSteps(guide);
  const edgepatrolSteps = steps.filter((s) => s.command.startsWith('edgepatrol '));
  t.ok(edgepatrolSteps.length >= 8, `${edgepatrolSteps.length} edgepatrol commands in the guide`);

  const rtsp = await startRtspServer({ mounts: ['dome', 'dome-sub'] });
  t.teardown(() => rtsp.stop());
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const discoveryPort = udp.address().port;
  await new Promise<void>((r) => udp.close(() => r()));
  const sim = await startOnvifSim({
    user: 'admin',
    password: 'Gate-2024!',
    rtsp: { server: rtsp, mount: 'dome', subMount: 'dome-sub' },
    discovery: { port: discoveryPort },
    name: 'North gate dome',
    location: 'Xiangmihu reserve land',
  });
  t.teardown(() => sim.stop());
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());

  const dir = tempDirFor(t, 'field-guide');
  const config = join(dir, 'gateway.yaml');
  // As the technician leaves /etc/edgepatrol/gateway.yaml after the guide's first step: the gateway's id, the
  // district's broker, no cameras yet.
  writeFileSync(
    config,
    [
      '# edgepatrol gateway config (docs/config.md).',
      'gateway:',
      '  id: gw-xmh-017',
      `  dataDir: ${join(dir, 'data')}`,
      '  timezone: Asia/Shanghai',
      'mqtt:',
      `  url: ${broker.url}`,
      '  prefix: edgepatrol',
      'cameras: []',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const pw = join(dir, 'dome.pw');
  writeFileSync(pw, 'Gate-2024!\n', { mode: 0o600 });

  // The guide's names for things here.
  const substitute = (w: string): string[] => {
    if (w === '~/dome.pw') return [pw];
    if (w === '192.168.1.64') return [`127.0.0.1:${sim.port}`];
    if (w === 'mqtt://192.168.10.5:1883') return [broker.url];
    if (w.endsWith('.jpg')) return [join(dir, w)];
    return [w];
  };
  const takesConfig = /^edgepatrol (doctor|camera|zones)\b/;
  let agent: ReturnType<typeof runCli> | undefined;
  t.teardown(() => agent?.stop('SIGKILL'));
  const printed: string[] = [];
  let tail: { step: Step; proc: ReturnType<typeof runCli> } | undefined;
  t.teardown(() => tail?.proc.stop('SIGKILL'));
  /** Exit 0, and each line the guide shows under the command starts like one it printed. */
  const check = (step: Step, r: { code: number | null; out: string; err: string }): void => {
    printed.push(`$ ${step.command}\n${r.out}${r.err ? `[stderr]\n${r.err}` : ''}`);
    t.equal(r.code, 0, `${step.command}: exit 0${r.code === 0 ? '' : `\n${r.out}\n${r.err}`}`);
    const real = `${r.out}\n${r.err}`.split('\n').map(lead);
    for (const line of step.shown) {
      t.ok(real.includes(lead(line)), `${step.command}: a line starting "${lead(line)}" (${line.trim().slice(0, 60)})`);
    }
  };

  for (const step of steps) {
    if (step.command.startsWith('sudo systemctl restart edgepatrol')) {
      // What systemd starts: the agent on the config the commands wrote.
      agent = runCli(['run', '--config', config]);
      await agent.waitForLog(/"msg":"agent started"/, 90_000);
      continue;
    }
    if (!step.command.startsWith('edgepatrol ')) continue;
    let args = words(step.command).slice(1).flatMap(substitute);
    // discover: multicast does not reach loopback here; the simulator is asked directly (unicast), as --host does.
    const iface = args.indexOf('--interface');
    if (iface !== -1) args.splice(iface, 2, '--host', '127.0.0.1', '--port', String(discoveryPort));
    if (takesConfig.test(step.command)) args = [...args, '--config', config];
    // A loaded test machine can be slower to give a frame than a camera on site.
    if (/^edgepatrol (camera (snapshot|test)|zones set)\b/.test(step.command) && !args.includes('--timeout')) args.push('--timeout', '30');
    if (step.command.startsWith('edgepatrol tail ')) {
      // The guide runs it in a second terminal before the restart: it follows while the agent starts.
      tail = { step, proc: runCli(args) };
      await tail.proc.waitForLog(/subscribed to/, 30_000);
      continue;
    }
    const r = await edgepatrol(...args);
    check(step, r);
  }
  t.ok(agent, 'the guide starts the service');
  t.ok(tail, 'the guide follows the broker with tail');
  if (tail) {
    const exit = await tail.proc.exited;
    check(tail.step, { code: exit.code, out: tail.proc.stdout(), err: tail.proc.stderr() });
  }
  if (process.env.FIELD_GUIDE_PRINT) console.error(printed.join('\n'));
  t.match(readFileSync(config, 'utf8'), /^# edgepatrol gateway config/, "the config's comment survived every command");
});
