/**
 * loom's GPT beside a PyTorch replica of the same run (issue: "GPT side by side with PyTorch on the same corpus").
 * Moby Dick has no published character-level number, so the anchor is made here: the `cpu` preset of papers/gpt
 * trained by loom and by `peers/gpt_train_torch.py` (the same architecture, initialization, data windows, batch
 * order logic, loss, AdamW, clipping, schedule and number of steps, written from loom's definitions), both
 * validating every `--validate-every` steps.
 *
 *   npm run replica:gpt -- [--seeds 0,1,2] [--loom-seeds 0] [--threads 2] [--validate-every 203] [--max-steps N]
 *
 * The data both read is written once by loom's own `char-text` source (token ids as int32), so the replica sees the
 * same numbers, not a re-implementation of the tokenizer. Runs alternate (PyTorch seed 0, loom seed 0, PyTorch
 * seed 1, ...). loom runs as a user would (`loom paper gpt --preset cpu --record`), so each of its runs leaves a
 * record under papers/gpt/results/. Writes benchmarks/results/gpt-replica.{json,md,svg}: the final validation
 * losses, PyTorch's mean and standard deviation over its seeds, the difference, both wall times and one plot of
 * every run's validation curve. Wall times count only on a quiet machine; the file says what else ran.
 */
import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createRegistry, type DataSource, loadPresets } from '../core';
import { registerBuiltins } from '../plugins';
import type { TokenWindows } from '../plugins/data/util';
import { meanStd, vegaLiteSvg } from '../runtime';
import { BENCH_DIR, REPO, peerSettings, withCapabilities } from './harness';
import { PYTHON, peerBlas, peerEnv } from './peer-blas';

interface Run {
  impl: 'loom' | 'PyTorch';
  seed: number;
  valLoss: number;
  wallSeconds: number;
  steps: number;
  curve: [number, number][];
  detail: string;
}

const { values: args } = parseArgs({
  options: {
    seeds: { type: 'string', default: '0,1,2' },
    'loom-seeds': { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
    'validate-every': { type: 'string', default: '203' },
    'max-steps': { type: 'string' },
    preset: { type: 'string', default: 'cpu' },
    out: { type: 'string', default: path.join(BENCH_DIR, 'results') },
  },
});
const seeds = (s: string) => (s ? s.split(',').map(Number) : []);
const threads = Number(args.threads);
const every = Number(args['validate-every']);
const maxSteps = args['max-steps'] ? Number(args['max-steps']) : undefined;

/** The preset as loom resolves it, and its data written by loom's own source. */
function prepare(dir: string): void {
  const config = loadPresets(path.join(REPO, 'papers/gpt/presets'))[args.preset!]!;
  const registry = registerBuiltins(createRegistry());
  const data = config.data as { source: Record<string, unknown> };
  const source = registry.create('dataset', data.source as never) as DataSource;
  for (const split of ['train', 'valid']) {
    const w = source.load(split) as TokenWindows;
    fs.writeFileSync(path.join(dir, `${split}.i32`), Buffer.from(w.tokens.buffer, w.tokens.byteOffset, w.tokens.byteLength));
  }
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
}

type BlasSetting = { coretype?: string; capability?: string; detail: string };

/** The replica for `seed` under the OpenBLAS core `blas`, stopped after `steps` if given. */
function torchSpawn(dir: string, seed: number, blas: BlasSetting, steps = maxSteps) {
  const argv = [path.join(BENCH_DIR, 'peers/gpt_train_torch.py'), dir, seed, threads, every, ...(steps ? [steps] : [])].map(String);
  return spawnSync(PYTHON, argv, {
    env: { ...peerEnv(blas.coretype, blas.capability), OPENBLAS_NUM_THREADS: String(threads) },
    encoding: 'utf8',
    timeout: 3 * 3600_000,
  });
}

/** Optimizer steps of the short replica runs that rank the OpenBLAS cores in {@link fastestCore}. */
const PROBE_STEPS = 60;

/**
 * The OpenBLAS core the replica runs under: of the cores PyTorch's peers are tried under (the small-product core and
 * the sgemm core where they differ: harness.ts peerSettings, the rule pythonPeer applies), the one at which a short
 * replica run ({@link PROBE_STEPS} steps and a validation) takes the least time. Each full run is hours, so the
 * candidates are ranked once by a probe rather than each seed run under both.
 */
function fastestCore(dir: string): BlasSetting {
  const blas = peerBlas();
  // peerSettings' undefined is pythonRun's default: PyTorch's own core choice (numpy's where torch was not probed).
  const cores = peerSettings('gpt_train_torch.py')
    .flatMap((s) => withCapabilities('gpt_train_torch.py', s))
    .map((c): BlasSetting => c ?? blas.torch ?? blas);
  if (cores.length < 2) return cores[0]!;
  const timed = cores.map((core) => {
    const r = torchSpawn(dir, 0, core, PROBE_STEPS);
    const wall = r.status === 0 ? (JSON.parse(r.stdout.trim().split('\n').at(-1)!).summary.wall_seconds as number) : Number.POSITIVE_INFINITY;
    console.log(
      `probe: ${PROBE_STEPS} replica steps and a validation on ${core.coretype ?? "OpenBLAS's own core"}${core.capability ? `, ATen ${core.capability}` : ''}: ${wall.toFixed(1)} s`,
    );
    return { core, wall };
  });
  return timed.reduce((a, b) => (b.wall < a.wall ? b : a)).core;
}

function torchRun(dir: string, seed: number, blas: BlasSetting): Run {
  const r = torchSpawn(dir, seed, blas);
  if (r.status !== 0) throw new Error(`PyTorch replica, seed ${seed}: ${r.stderr.trim().split('\n').at(-1)}`);
  const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!).summary;
  return {
    impl: 'PyTorch',
    seed,
    valLoss: s.val_loss,
    wallSeconds: s.wall_seconds,
    steps: s.steps,
    curve: s.curve,
    detail: `${s.peer}, ${s.detail}; ${blas.detail}${blas.capability ? `; ATen ${blas.capability.toUpperCase()} (ATEN_CPU_CAPABILITY)` : ''}`,
  };
}

function loomRun(seed: number): Run {
  const argv = ['cli/bin.mjs', 'paper', 'gpt', '--preset', args.preset!, '--seed', String(seed), '--record'];
  argv.push('--set', `trainer.validateEvery=${every}`, ...(maxSteps ? ['--max-steps', String(maxSteps)] : []));
  const r = spawnSync(process.execPath, argv, { cwd: REPO, env: { ...process.env, LOOM_THREADS: String(threads) }, encoding: 'utf8', timeout: 3 * 3600_000 });
  if (r.status !== 0) throw new Error(`loom, seed ${seed}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
  // The run's record (--record): its validation curve, wall time, machine and commit.
  const record = JSON.parse(fs.readFileSync(path.join(REPO, `papers/gpt/results/${args.preset}-seed${seed}.json`), 'utf8'));
  const val = record.run.metrics.val_loss as [number, number][];
  return {
    impl: 'loom',
    seed,
    valLoss: val.at(-1)![1],
    wallSeconds: record.wallTimeSec,
    steps: val.at(-1)![0],
    curve: val,
    detail: `loom ${record.machine.backend} (${record.machine.simd}, ${record.machine.threads} threads), commit ${String(record.commit).slice(0, 7)}`,
  };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-gpt-replica-'));
prepare(dir);
const torchSeeds = seeds(args.seeds!);
const torchCore = torchSeeds.length ? fastestCore(dir) : peerBlas();
const loomSeeds = seeds(args['loom-seeds']!);
const runs: Run[] = [];
for (let i = 0; i < Math.max(torchSeeds.length, loomSeeds.length); i++) {
  for (const [impl, list] of [
    ['PyTorch', torchSeeds],
    ['loom', loomSeeds],
  ] as const) {
    const seed = list[i];
    if (seed === undefined) continue;
    const run = impl === 'PyTorch' ? torchRun(dir, seed, torchCore) : loomRun(seed);
    console.log(`${impl} seed ${seed}: val_loss ${run.valLoss.toFixed(4)} after ${run.steps} steps, ${run.wallSeconds.toFixed(0)} s (${run.detail})`);
    runs.push(run);
  }
}
fs.rmSync(dir, { recursive: true, force: true });

const cpu = `${os.cpus()[0]?.model} x${os.cpus().length}`;
const torchStats = meanStd(runs.filter((r) => r.impl === 'PyTorch').map((r) => r.valLoss));
const loomStats = meanStd(runs.filter((r) => r.impl === 'loom').map((r) => r.valLoss));
const load = os.loadavg()[0]!.toFixed(1);
const md = [
  `# loom's GPT beside a PyTorch replica (papers/gpt, preset ${args.preset})`,
  '',
  `Machine: ${cpu}; ${threads} thread(s) each; load average at the end ${load} (wall times count only when nothing else ran).`,
  '',
  '| run | seed | steps | final validation loss (nats/char) | wall time (s) | detail |',
  '| --- | --- | --- | --- | --- | --- |',
  ...runs.map((r) => `| ${r.impl} | ${r.seed} | ${r.steps} | ${r.valLoss.toFixed(4)} | ${r.wallSeconds.toFixed(0)} | ${r.detail} |`),
  '',
  `PyTorch over ${torchSeeds.length} seed(s): ${torchStats.mean.toFixed(4)} ± ${torchStats.std.toFixed(4)}; loom over ${loomSeeds.length}: ${loomStats.mean.toFixed(4)} ± ${loomStats.std.toFixed(4)}; difference (loom − PyTorch) ${(loomStats.mean - torchStats.mean).toFixed(4)} nats/char (goal: within 0.03).`,
].join('\n');
const values = runs.flatMap((r) => r.curve.map(([step, value]) => ({ run: `${r.impl} seed ${r.seed}`, impl: r.impl, step, value })));
const svg = await vegaLiteSvg({
  $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
  title: `GPT (${args.preset}) on Moby Dick: validation loss, loom and PyTorch`,
  data: { values },
  width: 560,
  height: 280,
  mark: { type: 'line', point: true },
  encoding: {
    x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
    y: { field: 'value', type: 'quantitative', title: 'validation loss (nats/char)', scale: { zero: false } },
    color: { field: 'impl', type: 'nominal' },
    detail: { field: 'run', type: 'nominal' },
  },
} as never);
fs.mkdirSync(args.out!, { recursive: true });
fs.writeFileSync(path.join(args.out!, 'gpt-replica.svg'), svg);
fs.writeFileSync(path.join(args.out!, 'gpt-replica.md'), `${md}\n\n![validation curves](gpt-replica.svg)\n`);
fs.writeFileSync(path.join(args.out!, 'gpt-replica.json'), `${JSON.stringify({ cpu, threads, loadAverage: Number(load), runs }, null, 1)}\n`);
console.log(md);
