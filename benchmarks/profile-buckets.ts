/**
 * Where a training run's time goes, as proportions: a V8 CPU profile (`node --cpu-prof --cpu-prof-dir=DIR
 * cli/bin.mjs paper mnist-cnn --preset full ...`, main thread's file `*.0.001.cpuprofile`) bucketed by what each
 * sample's stack is doing: the training step (forward, backward and the finiteness read; the optimizer), and what a
 * real run adds to the benchmark's trainStep loop: batching, metrics, progress, tracking, validation and test,
 * startup (everything before the first step: module loading, child processes, data loading and checks), garbage
 * collection. Proportions, not times, so that a contended host can still compare two profiles (issue 20 item 4).
 *
 *   npx tsx benchmarks/profile-buckets.ts FILE.cpuprofile
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The fields of V8's .cpuprofile this reads. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
}

type Frame = { fn: string; file: string };
const has = (stack: Frame[], fn: string | null, file: string | null) =>
  stack.some((f) => (fn === null || f.fn === fn) && (file === null || f.file.includes(file)));

/** Buckets in order: a sample goes to the first whose test its stack (innermost frame first) passes. */
export const BUCKETS: [string, (stack: Frame[]) => boolean][] = [
  ['garbage collection', (s) => s[0]!.fn === '(garbage collector)'],
  ['idle', (s) => s[0]!.fn === '(idle)'],
  ['validation and test (Trainer.evaluate)', (s) => has(s, 'evaluate', 'core/trainer.ts')],
  ['metrics (accuracy.update)', (s) => has(s, 'update', 'plugins/metrics/')],
  ['progress display', (s) => has(s, null, 'plugins/callbacks/progress.ts')],
  ['tracker (logMetrics)', (s) => has(s, 'logMetrics', null)],
  ['batching (Dataset.batch, epoch order)', (s) => has(s, 'batch', 'core/data.ts') || has(s, 'epochBatches', null)],
  ['optimizer step', (s) => has(s, 'step', 'core/optimizer.ts')],
  ['forward, backward, finiteness read', (s) => has(s, 'gradients', 'core/trainer.ts') || has(s, 'localGradients', null)],
  ['trainStep, rest', (s) => has(s, 'trainStep', null)],
];

/**
 * Sample time (µs) by bucket. Samples before the first one inside `trainStep` that fit no bucket are "startup"
 * (split into module loading, child processes, data loading and other); later ones are "other".
 */
export function bucketProfile(p: CpuProfile): Map<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const out = new Map<string, number>();
  let started = false;
  for (let i = 0; i < p.samples.length; i++) {
    const stack: Frame[] = [];
    for (let id: number | undefined = p.samples[i]; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      stack.push({ fn: f.functionName, file: f.url });
    }
    started ||= has(stack, 'trainStep', null);
    let bucket = BUCKETS.find(([, test]) => test(stack))?.[0];
    if (!bucket && !started)
      bucket = has(stack, null, 'node:internal/modules')
        ? 'startup: module loading'
        : has(stack, 'spawnSync', null)
          ? 'startup: child processes (git, adapter probe)'
          : has(stack, null, 'plugins/data/') || has(stack, null, 'runtime/data-check.ts')
            ? 'startup: data loading and checks'
            : 'startup: other';
    bucket ??= 'other (async glue, tfjs engine outside a step)';
    out.set(bucket, (out.get(bucket) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const file = process.argv[2];
  if (!file || !fs.existsSync(file)) {
    console.error('usage: npx tsx benchmarks/profile-buckets.ts FILE.cpuprofile (from node --cpu-prof)');
    process.exit(2);
  }
  const buckets = bucketProfile(JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile);
  const total = [...buckets.values()].reduce((a, b) => a + b, 0);
  console.log(`${(total / 1e6).toFixed(1)} s of samples`);
  for (const [k, v] of [...buckets].sort((a, b) => b[1] - a[1])) console.log(`${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
}
