import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { root, edgepatrol } from './helpers/agent.js';
import { brokerFor, tempDirFor } from './helpers/mosquitto.js';

const commandsOf = (usage: string): string[] => [...usage.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1]!);
const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();

/** The exit codes each command lists in docs/cli.md, by command name. */
function documentedExitCodes(): Map<string, string> {
  const block = /```\n([\s\S]*?)```/.exec(readFileSync(join(root, 'docs', 'cli.md'), 'utf8'))![1]!;
  const codes = new Map<string, string>();
  let current = '';
  for (const line of block.split('\n')) {
    const head = /^(\w+):\s+exit codes: (.*)$/.exec(line);
    if (head) codes.set((current = head[1]!), head[2]!);
    else if (line.trim()) codes.set(current, `${codes.get(current)} ${line.trim()}`);
  }
  return codes;
}

/** A bad flag where each command reads its options (after the sub-command for those that have one). */
const withSub: Record<string, string[]> = {
  model: ['model', 'list'],
  outbox: ['outbox', 'stats'],
  camera: ['camera', 'snapshot'],
  rules: ['rules', 'test'],
  zones: ['zones', 'set'],
  task: ['task', 'list'],
  patrol: ['patrol', 'run'],
};

t.test(
  'every command: --help on stdout with its exit codes as docs/cli.md lists them; a bad flag is one line and the usage on stderr, exit 1',
  async (t) => {
    const top = await edgepatrol('--help');
    t.same([top.code, top.err], [0, '']);
    const commands = commandsOf(top.out);
    t.same(
      commands.toSorted(),
      ['camera', 'detect', 'discover', 'doctor', 'model', 'outbox', 'patrol', 'rules', 'run', 'status', 'tail', 'task', 'zones'],
      'the commands the usage lists',
    );
    const documented = documentedExitCodes();
    t.same([...documented.keys()].toSorted(), commands.toSorted(), 'docs/cli.md lists the exit codes of every command');

    await Promise.all(
      commands.map(async (name) => {
        const help = await edgepatrol(name, '--help');
        t.same([help.code, help.err], [0, ''], `${name} --help: exit 0, nothing on stderr`);
        t.match(help.out, new RegExp(`^usage: edgepatrol ${name}`), `${name} --help starts with its usage`);
        const listed = /^exit codes: ([\s\S]*)$/m.exec(help.out)?.[1];
        t.equal(squash(listed ?? ''), squash(documented.get(name) ?? ''), `${name}: the exit codes of --help are the ones in docs/cli.md`);

        const bad = await edgepatrol(...(withSub[name] ?? [name]), '--bogus');
        t.equal(bad.code, 1, `${name} --bogus: exit 1`);
        t.equal(bad.out, '', `${name} --bogus: nothing on stdout`);
        const [first, blank, usage] = bad.err.split('\n');
        t.equal(
          first,
          `edgepatrol ${withSub[name]?.join(' ') ?? name}: unknown option '--bogus'`,
          `${name} --bogus: one line naming the option`,
        );
        t.same([blank, usage?.startsWith(`usage: edgepatrol ${name}`)], ['', true], `${name} --bogus: then the usage`);
      }),
    );
  },
);

t.test('no command, an unknown command, a missing value and a stray argument are usage errors', async (t) => {
  for (const [args, line] of [
    [[], 'edgepatrol: a command is required'],
    [['nope'], "edgepatrol: unknown command 'nope'"],
    [['run', '--config'], 'edgepatrol run: --config needs a value'],
    [['run'], 'edgepatrol run: --config <file> is required'],
    [['status', '--config', 'a.yaml', 'extra'], "edgepatrol status: unexpected argument 'extra'"],
    [['model'], 'edgepatrol model: a command is required: list, verify, bench, add, quantize, compare, eval'],
    [['model', 'nope'], "edgepatrol model: unknown command 'nope'"],
    [['outbox', 'ls', '--limit', 'ten'], 'edgepatrol outbox ls: --limit ten: expected a positive integer'],
    [['tail', '--count', '0'], 'edgepatrol tail: --count and --timeout take positive numbers'],
  ] as const) {
    const r = await edgepatrol(...args);
    t.same([r.code, r.out], [1, ''], `${args.join(' ') || '(nothing)'}: exit 1, nothing on stdout`);
    t.equal(r.err.split('\n')[0], line);
    t.match(r.err, /\n\nusage: edgepatrol /, 'followed by the usage');
  }
});

t.test('a failure is one line on stderr naming the thing; an invalid config exits 2', async (t) => {
  const dir = tempDirFor(t, 'cli-style');
  const missingStore = join(dir, 'nope', 'outbox.db');
  const store = await edgepatrol('outbox', 'stats', '--file', missingStore);
  t.same([store.code, store.out], [1, '']);
  t.match(store.err, new RegExp(`^edgepatrol outbox stats: cannot open outbox .*${missingStore}.*\\n$`));
  t.equal(store.err.split('\n').length, 2, 'one line');

  const ca = join(dir, 'no-ca.pem');
  const tls = await edgepatrol('tail', '--ca', ca, '--timeout', '1');
  t.same([tls.code, tls.out, tls.err], [1, '', `edgepatrol tail: --ca ${ca}: no such file\n`]);

  const config = join(dir, 'gateway.yaml');
  writeFileSync(config, 'gateway: { id: 7 }\n');
  const invalid = await edgepatrol('status', '--config', config);
  t.same([invalid.code, invalid.out], [2, '']);
  t.match(invalid.err, config, 'names the config file');
});

t.test('tail exits 4 when the broker is unreachable within --timeout, and at once when it refuses the connection', async (t) => {
  // Port 1 is privileged and closed: connections are refused.
  const unreachable = await edgepatrol('tail', '--url', 'mqtt://127.0.0.1:1', '--count', '1', '--timeout', '1');
  t.same([unreachable.code, unreachable.out], [4, '']);
  t.match(
    unreachable.err.trimEnd().split('\n').pop(),
    'edgepatrol tail: no connection to mqtt://127.0.0.1:1 within 1 s; check --url and that the broker runs',
  );

  // The later allow_anonymous wins: the broker turns away a client without a user.
  const broker = await brokerFor(t, { extraConfig: ['allow_anonymous false'] });
  const started = Date.now();
  const refused = await edgepatrol('tail', '--url', broker.url, '--timeout', '300');
  t.same([refused.code, refused.out], [4, '']);
  t.equal(
    refused.err,
    `edgepatrol tail: ${broker.url} refused the connection (Connection refused: Not authorized); check the user and password in --url, or --cert and --key\n`,
  );
  t.ok(Date.now() - started < 120_000, 'without waiting for --timeout');
});
