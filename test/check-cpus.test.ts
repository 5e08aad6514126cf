// scripts/check-cpus.sh's fast parts: its argument errors, and (when .cache/arm64 is built) that the arm64 tree's
// node runs under qemu-aarch64 with the emulated CPU's /proc/cpuinfo. The emulated detection runs stay out of
// the suite (minutes); .ci/run calls `scripts/check-cpus.sh --quick` after it.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../src/version.js';

const script = join(projectRoot, 'dist', 'scripts', 'check-cpus.js');

function checkCpus(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', cwd: projectRoot });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

t.test('--help lists the four CPU kinds and exits 0', async (t) => {
  const r = checkCpus('--help');
  t.equal(r.code, 0, r.err);
  for (const kind of ['x64-host', 'x64-haswell', 'arm64-a72', 'arm64-max']) t.match(r.out, kind);
});

t.test('bad arguments exit 2 and say what is wrong', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--cpus', 'x64-host,sparc'], /unknown CPU kind 'sparc' in --cpus; known: x64-host, x64-haswell, arm64-a72, arm64-max/],
    [['--min-f1', '1.5'], /--min-f1 must be between 0 and 1, got '1.5'/],
    [['--frames', '0'], /--frames 0 and no image given: nothing to check/],
    [['--quick', '--frames', '3'], /--quick sets --frames 2; give one of them/],
    [['--threshold', '0.01'], /--threshold must be above 0.05/],
    [['/nonexistent/frame.png'], /image \/nonexistent\/frame.png does not exist/],
    [['--colour'], /Unknown option '--colour'/],
  ];
  for (const [args, message] of cases) {
    const r = checkCpus(...args);
    t.equal(r.code, 2, `exit code of ${args.join(' ')}`);
    t.match(r.err, message, args.join(' '));
    t.equal(r.out, '', `nothing on stdout for ${args.join(' ')}`);
  }
});

t.test('a model without quantization.from needs --reference', async (t) => {
  const r = checkCpus('--cpus', 'x64-host', '--model', 'nanodet-m', '--frames', '1');
  t.equal(r.code, 2);
  t.match(r.err, /model 'nanodet-m' in .*manifest\.json records no quantization\.from; name its FP32 source with --reference/);
});

// What scripts/arm64.sh itself requires of a built tree (a half-built one, while a build runs, is skipped too).
const armBuilt = ['node/bin/node', 'cpuinfo-a72', 'app/dist/src/cli/main.js'].every((f) =>
  existsSync(join(projectRoot, '.cache', 'arm64', f)),
);
t.test(
  'the arm64 tree runs under qemu-aarch64 with a Cortex-A72 /proc/cpuinfo',
  { skip: armBuilt ? false : 'no .cache/arm64 (bash scripts/arm64.sh build)' },
  async (t) => {
    const r = spawnSync(
      'bash',
      [
        join(projectRoot, 'scripts', 'arm64.sh'),
        'node',
        'a72',
        '-p',
        'process.arch + " " + /^Features.*$/m.exec(require("fs").readFileSync("/proc/cpuinfo", "utf8"))[0]',
      ],
      { encoding: 'utf8' },
    );
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /^arm64 Features\s*: fp asimd .*cpuid$/m);
    t.notMatch(r.stdout, /asimddp/, 'the A72 has no dot product');
  },
);
