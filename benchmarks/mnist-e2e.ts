/**
 * `npm start` end to end (issue 20 item 4): the MNIST CNN's full recipe run as a user runs it (`node cli/bin.mjs
 * paper mnist-cnn --preset full`, tracked to a temporary MLflow store: startup, data, shuffled batches, metrics,
 * progress lines, tracking, validation every epoch, test, saving) against the PyTorch replica of the same recipe
 * (benchmarks/peers/mnist_full_torch.py), each in its own process, in alternation, and beside them the mnist-cnn
 * benchmark's trainStep loop (one fixed batch) measured in this process in the same rounds. Two rows:
 *
 * - `mnist-e2e wall`: training samples per second of wall time (spawn to exit), so that higher is better like the
 *   other rows; ours / PyTorch's is the replica's wall time over ours, target ≥ 1/0.6 (ours at most 0.6x its time).
 * - `mnist-e2e steady b32`: the real run's steady training rate against the trainStep loop's (target ≥ 0.85: within
 *   15 %). The real run's rate is read from its own MLflow record: `batch_loss` is logged every 50 steps with a
 *   timestamp, and the rate is steps x 32 over the time between logs, summed over the intervals after the first
 *   {@link WARMUP} steps that hold no epoch's end (which would include validation).
 *
 * `--tiny` stops both runs after 400 steps (1 round) to check the code path; nothing is written then.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PluginRegistry } from '../core';
import {
  REPO,
  TORCH_SETTINGS,
  entry,
  measure,
  peerSettings,
  pythonRun,
  withCapabilities,
  type PeerSetting,
  type Benchmark,
  type BenchEntry,
  type PeerResult,
} from './harness';
import { mnistTrainStep } from './mnist-cnn';

/** Steps at the start of a run left out of its steady rate (compilation, caches, the allocator's first pages). */
export const WARMUP = 200;
const BATCH = 32;
const TRAIN = 54000; // 60,000 less the 10 % validation split
const STEPS_PER_EPOCH = Math.ceil(TRAIN / BATCH);

/** Training samples in the first `steps` optimizer steps of the recipe (each epoch's last batch holds 16). */
export function samplesIn(steps: number): number {
  const epochs = Math.floor(steps / STEPS_PER_EPOCH);
  return epochs * TRAIN + (steps - epochs * STEPS_PER_EPOCH) * BATCH;
}

/** One MLflow file-store metric file's lines, `timestamp value step`. */
function metricLines(runDir: string, key: string): { t: number; value: number; step: number }[] {
  const file = path.join(runDir, 'metrics', key);
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [t, value, step] = line.split(' ').map(Number);
      return { t: t!, value: value!, step: step! };
    });
}

/**
 * The steady training rate (samples/s) from a run's `batch_loss` log times: over consecutive logs (s1, s2] with
 * s1 ≥ `warmup` and no epoch ending at a step in [s1, s2) (its validation runs after step e's log, before step e+1),
 * the steps' samples over the time between them. Null when no interval qualifies.
 */
export function steadyRate(logs: { t: number; step: number }[], epochEnds: number[], warmup = WARMUP, batch = BATCH): number | null {
  let steps = 0;
  let ms = 0;
  for (let i = 1; i < logs.length; i++) {
    const [a, b] = [logs[i - 1]!, logs[i]!];
    if (a.step < warmup || epochEnds.some((e) => e >= a.step && e < b.step)) continue;
    steps += b.step - a.step;
    ms += b.t - a.t;
  }
  return ms > 0 ? (steps * batch * 1000) / ms : null;
}

interface RunResult {
  wall: number;
  steady: number | null;
  steps: number;
  testAccuracy: number;
}

/**
 * The environment `npm start` runs in: this one, tracking to `store`, without the webgpu adapter probe's answer that
 * this process's backend selection left in LOOM_WEBGPU_PEEK for its children (a user's run asks for itself, and
 * that costs it time).
 */
export function childEnv(store: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, MLFLOW_TRACKING_URI: `file://${path.join(store, 'mlruns')}` };
  delete env.LOOM_WEBGPU_PEEK;
  return env;
}

/** `npm start` (with `--max-steps` when given) in its own process, tracked to a temporary MLflow store. */
function loomRun(maxSteps?: number): RunResult {
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-e2e-'));
  try {
    const args = ['cli/bin.mjs', 'paper', 'mnist-cnn', '--preset', 'full', ...(maxSteps ? ['--max-steps', String(maxSteps)] : [])];
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, {
      cwd: REPO,
      env: childEnv(store),
      encoding: 'utf8',
      maxBuffer: 16 * 2 ** 20,
      timeout: 1_800_000,
    });
    const wall = (performance.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`mnist-e2e: npm start failed (exit ${r.status}): ${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)}`);
    const runDir = r.stdout.match(/^MLflow run \w+ \(experiment \w+\) at (.+)$/m)?.[1];
    if (!runDir) throw new Error('mnist-e2e: npm start did not print where its MLflow run is');
    const logs = metricLines(runDir, 'batch_loss');
    const epochEnds = metricLines(runDir, 'epoch').map((l) => l.step);
    return {
      wall,
      steady: steadyRate(logs, epochEnds),
      steps: epochEnds.at(-1) ?? 0,
      testAccuracy: metricLines(runDir, 'test_accuracy')[0]?.value ?? Number.NaN,
    };
  } finally {
    fs.rmSync(store, { recursive: true, force: true });
  }
}

/** One way to run the replica: a {@link TORCH_SETTINGS} entry and an OpenBLAS core of {@link peerSettings}. */
interface TorchSetting {
  threads: number;
  env: NodeJS.ProcessEnv;
  core: PeerSetting;
}

/**
 * The replica's setting: every {@link TORCH_SETTINGS} entry under every OpenBLAS core PyTorch's peers are tried
 * under (the small-product core and the sgemm core where they differ: {@link peerSettings}, the rule pythonPeer
 * applies), each probed with the mnist-cnn peer's training step at the recipe's batch, the fastest kept. Running
 * the whole replica under each candidate every round would double its part of the row (~40 s a run here) and
 * push a full measurement past what one quiet window holds; the step is what the replica spends its time in.
 */
function fastestTorchSetting(seconds: number): TorchSetting {
  const cores = peerSettings('mnist_full_torch.py').flatMap((s) => withCapabilities('mnist_full_torch.py', s));
  const probes = TORCH_SETTINGS.flatMap((s) =>
    cores.map((core) => {
      const r = pythonRun('mnist_cnn_torch.py', [BATCH, s.threads, seconds], s.threads, s.env, core);
      return { setting: { ...s, core }, value: 'missing' in r ? null : (r.out.value as number) };
    }),
  );
  const ok = probes.filter((p) => p.value !== null).sort((a, b) => b.value! - a.value!);
  return ok[0]?.setting ?? { ...TORCH_SETTINGS[0]!, core: cores[0] };
}

/** The replica under `setting`, timed from spawn to exit as ours is. */
function torchRun(setting: TorchSetting, maxSteps?: number): (RunResult & { peer: string; detail: string }) | { missing: string } {
  const { threads, env, core } = setting;
  const t0 = performance.now();
  const r = pythonRun('mnist_full_torch.py', [threads, maxSteps ?? 0], threads, env, core);
  const wall = (performance.now() - t0) / 1000;
  if ('missing' in r) return r;
  const o = r.out as { peer: string; detail: string; steady_samples_per_s: number | null; steps: number; test_accuracy: number };
  return {
    wall,
    steady: o.steady_samples_per_s,
    steps: o.steps,
    testAccuracy: o.test_accuracy,
    peer: o.peer,
    detail: [o.detail, r.blas].join('; '),
  };
}

/** The median (of an even count, the mean of the middle two). */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length / 2;
  return s.length % 2 ? s[Math.floor(m)]! : (s[m - 1]! + s[m]!) / 2;
}

const nonNull = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);

export function mnistE2e(registry: PluginRegistry, backend: string, opts: { tiny?: boolean; rounds?: number } = {}): Benchmark {
  return {
    name: 'mnist-e2e',
    description: '`npm start` (MNIST CNN full recipe) end to end vs its PyTorch replica, in alternation, and its steady rate vs trainStep',
    async run(): Promise<BenchEntry[]> {
      const maxSteps = opts.tiny ? 2 * WARMUP : undefined;
      const rounds = opts.tiny ? 1 : (opts.rounds ?? 2);
      // The replica at its best thread setting and OpenBLAS core: those at which the mnist-cnn peer's step is fastest.
      const setting = fastestTorchSetting(opts.tiny ? 0.5 : 2);
      const ours: RunResult[] = [];
      const theirs: (RunResult & { peer: string; detail: string })[] = [];
      const loops: number[] = [];
      let missing: string | undefined;
      for (let round = 0; round < rounds; round++) {
        ours.push(loomRun(maxSteps));
        const { step, dispose } = await mnistTrainStep(registry, BATCH);
        try {
          // Warmed up as the real run's rate is (its first WARMUP steps left out): the first ~200 steps of a fresh
          // model ran at about half the later rate here, and a short window would time only them.
          loops.push(await measure(step, BATCH, { warmup: WARMUP, ...(opts.tiny ? { seconds: 0.5, repeats: 1 } : {}) }));
        } finally {
          dispose();
        }
        if (missing) continue;
        const t = torchRun(setting, maxSteps);
        if ('missing' in t) missing = t.missing;
        else theirs.push(t);
      }
      const trained = samplesIn(ours[0]!.steps);
      const wall = median(ours.map((r) => r.wall));
      const steady = nonNull(ours.map((r) => r.steady));
      const accuracy = (rs: RunResult[]) => rs.map((r) => `${(100 * r.testAccuracy).toFixed(2)} %`).join(', ');
      const torchWall = theirs.length ? median(theirs.map((r) => r.wall)) : null;
      const torchSteady = nonNull(theirs.map((r) => r.steady));
      const torchPeer = theirs[0]?.peer ?? 'PyTorch replica';
      const torchDetail = theirs.length
        ? `${theirs[0]!.detail}; wall ${theirs.map((r) => r.wall.toFixed(1)).join(', ')} s; test accuracy ${accuracy(theirs)}`
        : undefined;
      const peerOf = (value: number | null, unit: string): PeerResult =>
        missing && value === null ? { peer: torchPeer, value: null, unit, missing } : { peer: torchPeer, value, unit, detail: torchDetail };
      const scope = maxSteps ? `--max-steps ${maxSteps}` : 'full recipe, 5 epochs';
      const rows = [
        entry(
          'mnist-e2e wall',
          'training samples/s of wall time',
          trained / wall,
          `npm start on ${backend} (${scope}, ${trained} training samples), spawn to exit: ${ours.map((r) => r.wall.toFixed(1)).join(', ')} s (median of ${rounds} round(s) in alternation with the replica${torchWall ? `; wall time ours / PyTorch's ${(wall / torchWall).toFixed(2)}, target ≤ 0.6` : ''}); test accuracy ${accuracy(ours)}`,
          [peerOf(torchWall === null ? null : trained / torchWall, 'training samples/s of wall time')],
          1.67, // 1 / 0.6
        ),
        entry(
          'mnist-e2e steady b32',
          'samples/s',
          steady.length ? median(steady) : Number.NaN,
          `npm start's training rate after step ${WARMUP}, from its MLflow batch_loss times, validation excluded (${steady.map((v) => v.toFixed(0)).join(', ')}); target within 15 % of the trainStep loop`,
          [
            {
              peer: 'loom trainStep loop (the mnist-cnn benchmark, same process)',
              value: median(loops),
              unit: 'samples/s',
              detail: loops.map((v) => v.toFixed(0)).join(', '),
            },
            peerOf(torchSteady.length ? median(torchSteady) : null, 'samples/s'),
          ],
          0.85,
        ),
      ];
      return rows.map((r) => (opts.tiny ? { ...r, unrecorded: '--tiny: a check of the code path' } : r));
    },
  };
}
