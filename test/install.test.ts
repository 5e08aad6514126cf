// scripts/install.sh into a scratch root (--prefix, --skip-setup: this machine has the checkout built), run as a real
// process: the files and their modes, the unit, the installed agent's CLI from the copy, a second run that keeps the
// technician's config and data, --uninstall (keeps etc and var) and --uninstall --purge (removes them).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { root, tempDir } from './helpers/agent.js';

const script = join(root, 'scripts', 'install.sh');

function install(prefix: string, ...args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync('bash', [script, '--prefix', prefix, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stderr: r.stderr };
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

t.before(() => {
  if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) throw new Error('run `npx tsc -p tsconfig.json` first');
  if (!readdirSync(join(root, 'build', 'Release')).some((f) => f.endsWith('.node'))) throw new Error('build/Release/*.node missing');
});

t.test('install into a scratch root, twice, then uninstall and purge', async (t) => {
  const prefix = tempDir('install');
  t.teardown(() => rmSync(prefix, { recursive: true, force: true }));
  const opt = join(prefix, 'opt', 'edgepatrol');
  const etc = join(prefix, 'etc', 'edgepatrol');
  const data = join(prefix, 'var', 'lib', 'edgepatrol');
  const unit = join(prefix, 'etc', 'systemd', 'system', 'edgepatrol.service');
  const config = join(etc, 'gateway.yaml');

  const started = Date.now();
  const first = install(prefix, '--skip-setup');
  t.equal(first.code, 0, first.stderr);
  t.comment(`first install: ${Date.now() - started} ms`);
  t.match(first.stderr, /--prefix: the system user edgepatrol is not created/);
  t.match(first.stderr, /--prefix: systemctl not run/);

  for (const f of [
    'package.json',
    'bin/edgepatrol.js',
    'dist/src/cli/main.js',
    'models/manifest.json',
    'models/nanodet-m.onnx',
    'models/nanodet-m-int8.onnx',
    'models/nanodet-m-int8.calib.json',
    'build/Release/vision.node',
    'build/Release/notify.node',
    'node_modules/better-sqlite3/package.json',
    'node_modules/onnxruntime-node/package.json',
    'node_modules/sharp/package.json',
    'systemd/edgepatrol.service',
    'docs/config.md',
  ]) {
    t.ok(existsSync(join(opt, f)), `opt has ${f}`);
  }
  // Production packages only: no devDependencies, no other platforms' onnxruntime binaries.
  t.notOk(existsSync(join(opt, 'node_modules', 'tap')), 'no devDependency tap');
  t.notOk(existsSync(join(opt, 'node_modules', 'typescript')), 'no devDependency typescript');
  t.notOk(existsSync(join(opt, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'win32')), 'no win32 onnxruntime');
  t.notOk(existsSync(join(opt, 'dist', 'test')), 'no compiled tests');

  t.equal(mode(etc), 0o750, 'etc dir 0750');
  t.equal(mode(config), 0o600, 'config 0600');
  t.equal(mode(data), 0o750, 'data dir 0750');
  t.equal(mode(unit), 0o644, 'unit 0644');
  t.equal(readFileSync(config, 'utf8'), readFileSync(join(root, 'examples', 'gateway.yaml'), 'utf8'), 'config from the example');
  t.match(readFileSync(config, 'utf8'), /dataDir: \/var\/lib\/edgepatrol\b/, 'config points at /var/lib/edgepatrol');
  const unitText = readFileSync(unit, 'utf8');
  t.match(unitText, /^Type=notify$/m);
  t.match(unitText, /^User=edgepatrol$/m);
  t.match(unitText, /^ExecStart=\/usr\/bin\/node \/opt\/edgepatrol\/bin\/edgepatrol\.js run --config \/etc\/edgepatrol\/gateway\.yaml$/m);
  t.match(unitText, /^StateDirectory=edgepatrol$/m);
  t.notOk(existsSync(join(prefix, 'etc', 'passwd')), 'no passwd written');

  // The copy works on its own: the agent's CLI, the model check (onnxruntime), and better-sqlite3 and sharp load.
  const verify = spawnSync(process.execPath, [join(opt, 'bin', 'edgepatrol.js'), 'model', 'verify', '--models-dir', join(opt, 'models')], {
    cwd: prefix,
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(verify.status, 0, `model verify from the copy: ${verify.stderr}`);
  t.match(verify.stdout, /nanodet-m-int8: sha256 matches/);
  const natives = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { createRequire } from 'node:module';
       const require = createRequire(process.argv[1] + '/package.json');
       const db = new (require('better-sqlite3'))(':memory:');
       const sharp = require('sharp');
       await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).png().toBuffer();
       console.log(db.prepare('select 42 as x').get().x);`,
      opt,
    ],
    { cwd: prefix, encoding: 'utf8', timeout: 60_000 },
  );
  t.equal(natives.status, 0, natives.stderr);
  t.equal(natives.stdout.trim(), '42', 'better-sqlite3 and sharp load from the copy');

  // A technician's edit and the agent's data survive a second run; the tree is refreshed.
  writeFileSync(config, `${readFileSync(config, 'utf8')}# technician was here\n`);
  writeFileSync(join(data, 'outbox.db'), 'marker');
  writeFileSync(join(opt, 'stale-file'), 'x');
  const second = install(prefix, '--skip-setup');
  t.equal(second.code, 0, second.stderr);
  t.match(second.stderr, /kept the existing .*gateway\.yaml/);
  t.match(readFileSync(config, 'utf8'), /# technician was here\n$/, 'config kept');
  t.equal(mode(config), 0o600);
  t.equal(readFileSync(join(data, 'outbox.db'), 'utf8'), 'marker', 'data kept');
  t.notOk(existsSync(join(opt, 'stale-file')), 'opt replaced as a whole');
  t.ok(existsSync(join(opt, 'bin', 'edgepatrol.js')));
  t.same(
    readdirSync(join(prefix, 'opt')).filter((f) => f !== 'edgepatrol'),
    [],
    'no leftover temporary trees',
  );

  const un = install(prefix, '--uninstall');
  t.equal(un.code, 0, un.stderr);
  t.notOk(existsSync(opt), 'opt removed');
  t.notOk(existsSync(unit), 'unit removed');
  t.match(readFileSync(config, 'utf8'), /# technician was here/, 'config kept by --uninstall');
  t.equal(readFileSync(join(data, 'outbox.db'), 'utf8'), 'marker', 'data kept by --uninstall');
  t.equal(install(prefix, '--uninstall').code, 0, 'uninstall again: nothing to do');

  const purge = install(prefix, '--uninstall', '--purge');
  t.equal(purge.code, 0, purge.stderr);
  t.notOk(existsSync(etc), 'etc purged');
  t.notOk(existsSync(data), 'data purged');
  t.equal(install(prefix, '--uninstall', '--purge').code, 0, 'purge again: nothing to do');
});

t.test('usage errors and --help', async (t) => {
  const help = spawnSync('bash', [script, '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  t.match(help.stdout, /--skip-setup/);
  t.match(help.stdout, /Exit codes:/);
  const bad = spawnSync('bash', [script, '--bogus'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /unknown option: --bogus/);
  const purgeAlone = spawnSync('bash', [script, '--purge', '--prefix', '/nonexistent-edgepatrol-prefix'], { encoding: 'utf8' });
  t.equal(purgeAlone.status, 2);
});
