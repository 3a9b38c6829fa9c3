/**
 * `npm run bench -- [names] [--force-software] [--tiny] [--rows=a,b]`: runs the benchmarks (all, or those named),
 * each side by side with its peers in the same run, prints a table of ratios, and writes results/latest.{json,md,svg}.
 * The `webgpu` rows need a hardware adapter; `--force-software` runs them on a software one (printed, not written).
 * `--tiny` runs the `webgpu` rows at tiny sizes, and `mnist-e2e` for 400 steps, to check the code path, writing
 * nothing. `--rows=` runs only some of the `inference` rows (mnist-b1, mnist-b128, gpt, g2p): the whole benchmark
 * is ~22 minutes, longer than a quiet window on the shared host.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRegistry, selectBackend } from '../core';
import { cpuIdentity, environmentTags, vegaLiteSvg } from '../runtime';
import { registerBuiltins } from '../plugins';
import { dataParallel } from './data-parallel';
import { BENCH_DIR, type BenchEntry, type Benchmark } from './harness';
import { simdCap } from './peer-blas';
import { precision } from './precision';
import { INFERENCE_ROWS, inference, type InferenceRow } from './inference';
import { mnistCnn } from './mnist-cnn';
import { mnistE2e } from './mnist-e2e';
import { sequenceModels } from './sequence-models';
import { sgemm, sgemmShapes } from './sgemm';
import { webgpuRows } from './webgpu';

const fmt = (v: number | null) => (v === null ? 'missing' : v >= 100 ? v.toFixed(0) : v.toFixed(1));

const FLAGS = ['--force-software', '--tiny', '--rows=...'];
const args = process.argv.slice(2);
const rowsFlag = args.find((a) => a.startsWith('--rows='));
const rows = rowsFlag ? rowsFlag.slice('--rows='.length).split(',') : undefined;
const badRows = (rows ?? []).filter((r) => !(INFERENCE_ROWS as readonly string[]).includes(r));
const badFlags = args.filter((a) => a.startsWith('--') && !FLAGS.includes(a) && a !== rowsFlag);
if (badRows.length) {
  console.error(`bench: unknown row(s) ${badRows.join(', ')}; --rows= takes ${INFERENCE_ROWS.join(', ')}`);
  process.exit(2);
}
if (badFlags.length) {
  console.error(`bench: unknown flag(s) ${badFlags.join(', ')}; flags: ${FLAGS.join(', ')}`);
  process.exit(2);
}
const tiny = args.includes('--tiny');
// The commit and machine as the run starts (editing the checkout during a long run does not change what it measured).
const started = new Date().toISOString();
const facts = environmentTags();
const cap = simdCap();
const registry = registerBuiltins(createRegistry());
const { tags, backend } = await selectBackend(registry, process.env.LOOM_BACKEND);
const all: Benchmark[] = [
  sgemm(tags.backend!),
  sgemmShapes(tags.backend!),
  mnistCnn(registry, tags.backend!),
  mnistE2e(registry, tags.backend!, { tiny }),
  sequenceModels(registry, tags.backend!),
  precision(registry, backend, tags.backend!),
  inference(registry, tags.backend!, rows as InferenceRow[] | undefined),
  dataParallel(),
  webgpuRows(registry, tags.backend!, { forceSoftware: args.includes('--force-software'), tiny }),
];
const wanted = args.filter((a) => !a.startsWith('--'));
const unknown = wanted.filter((w) => !all.some((b) => b.name === w));
if (unknown.length) {
  console.error(`bench: unknown benchmark(s) ${unknown.join(', ')}; available: ${all.map((b) => b.name).join(', ')}`);
  process.exit(2);
}
const shrinkable = ['webgpu', 'mnist-e2e'];
if (tiny && !(wanted.length > 0 && wanted.every((w) => shrinkable.includes(w)))) {
  console.error(
    `bench: --tiny shrinks the ${shrinkable.join(' and ')} rows only: run it as \`npm run bench -- webgpu --tiny\` or \`npm run bench -- mnist-e2e --tiny\``,
  );
  process.exit(2);
}
console.log(`backend: ${tags.backend} (${tags['backend.kernels']}) on ${os.cpus()[0]?.model} (${cpuIdentity()}) x${os.cpus().length}`);
if (cap) console.log('LOOM_SIMD=avx2: loom and every peer run AVX2 code (OpenBLAS AVX2 cores, ATen and oneDNN at AVX2); rows named [AVX2 cap]');

const entries: BenchEntry[] = [];
// A benchmark that fails (a peer or a tool missing in a way its rows cannot report) is named and skipped: the rows
// of the others are still written, and the run ends with status 1.
const failed: string[] = [];
for (const b of all.filter((b) => wanted.length === 0 || wanted.includes(b.name))) {
  console.log(`running ${b.name}: ${b.description}`);
  let rows: BenchEntry[];
  try {
    rows = await b.run();
  } catch (e) {
    const message = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    console.log(`  ${b.name} failed, its rows are not written: ${message}`);
    failed.push(b.name);
    continue;
  }
  for (const e of rows) {
    // Under LOOM_SIMD=avx2 both sides run AVX2 code (harness.ts, peer-blas.ts simdCap): rows of their own, kept
    // beside the host's best rather than replacing them.
    if (cap) e.name = `${e.name} [AVX2 cap]`;
    entries.push(e);
    console.log(`  ${line(e)}`);
  }
}
if (failed.length > 0) {
  process.exitCode = 1; // the exits below take it (process.exit() without a code)
  process.on('exit', () => console.log(`bench: ${failed.join(', ')} failed (see above)`));
}

const unrecorded = entries.filter((e) => e.unrecorded);
for (const e of unrecorded) console.log(`not written to results/: ${e.name} (${e.unrecorded})`);
if (tiny) {
  console.log('--tiny: a check of the code path; nothing written to results/');
  process.exit();
}
entries.splice(0, entries.length, ...entries.filter((e) => !e.unrecorded));
if (entries.length === 0) {
  console.log('nothing to write to results/');
  process.exit();
}

/** When, at which commit and on which CPU a row was measured (rows from before `cpu.id` was recorded name the model only). */
function measuredAt(env: Record<string, string> | undefined): string {
  if (!env) return '?';
  return `${env.date?.slice(0, 16) ?? '?'}, ${env['git.commit']?.slice(0, 7) ?? '?'}, ${env['cpu.model'] ?? '?'}${env['cpu.id'] ? ` (${env['cpu.id']})` : ''}`;
}

function line(e: BenchEntry): string {
  const peers = e.peers.map((p) => `${p.peer} ${fmt(p.value)}${p.missing ? ` (${p.missing})` : ''}`).join(' | ');
  return `${e.name}: ours ${fmt(e.ours)} ${e.unit} | ${peers} | ratio ${e.ratio === null ? 'n/a' : e.ratio.toFixed(2)}${e.target ? ` (target ≥ ${e.target})` : ''}`;
}

const outDir = path.join(BENCH_DIR, 'results');
fs.mkdirSync(outDir, { recursive: true });
const env: Record<string, string> = { date: started, ...facts, ...tags };
// Keep earlier entries of benchmarks not run this time, so `npm run bench -- sgemm` does not erase the others.
const previous = fs.existsSync(path.join(outDir, 'latest.json'))
  ? (JSON.parse(fs.readFileSync(path.join(outDir, 'latest.json'), 'utf8')) as { entries: (BenchEntry & { env?: Record<string, string> })[] }).entries
  : [];
const ran = new Set(entries.map((e) => e.name));
const merged: (BenchEntry & { env?: Record<string, string> })[] = [...previous.filter((e) => !ran.has(e.name)), ...entries.map((e) => ({ ...e, env }))];
fs.writeFileSync(path.join(outDir, 'latest.json'), `${JSON.stringify({ env, entries: merged }, null, 2)}\n`);

const md = [
  `# Benchmarks (${env.date})`,
  '',
  `Backend \`${tags.backend}\` (${tags['backend.kernels']}), ${env['cpu.model']} (${env['cpu.id']}) x${env['cpu.count']}, Node ${env['node.version']}, commit ${env['git.commit']}.`,
  '',
  'Rows kept from earlier runs (a run of some benchmarks keeps the others) say when, at which commit and on which CPU they were measured.',
  '',
  '| benchmark | unit | ours | peers | ratio (ours / first peer) | target | notes | measured |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ...merged.map(
    (e) =>
      `| ${e.name} | ${e.unit} | ${fmt(e.ours)} | ${e.peers.map((p) => `${p.peer}${p.detail ? ` (${p.detail})` : ''}: ${fmt(p.value)}${p.missing ? ` — ${p.missing}` : ''}`).join('<br>')} | ${e.ratio === null ? 'n/a' : e.ratio.toFixed(2)} | ${e.target ? `≥ ${e.target}` : ''} | ${e.oursDetail} | ${measuredAt(e.env)} |`,
  ),
  '',
].join('\n');
fs.writeFileSync(path.join(outDir, 'latest.md'), md);

const values = merged.flatMap((e) => [
  { benchmark: e.name, who: 'loom', value: e.ours },
  ...e.peers.filter((p) => p.value !== null).map((p) => ({ benchmark: e.name, who: p.peer, value: p.value! })),
]);
const svg = await vegaLiteSvg({
  $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
  title: 'loom vs peers (same run; higher is better)',
  data: { values },
  facet: { row: { field: 'benchmark', type: 'nominal', title: null } },
  spec: {
    width: 420,
    mark: 'bar',
    encoding: {
      y: { field: 'who', type: 'nominal', title: null },
      x: { field: 'value', type: 'quantitative', title: 'throughput (unit per benchmark)' },
      color: { field: 'who', type: 'nominal', legend: null },
    },
  },
  resolve: { scale: { x: 'independent' } },
} as never);
fs.writeFileSync(path.join(outDir, 'latest.svg'), svg);
console.log(`\n${md}\nwrote ${path.relative(process.cwd(), outDir)}/latest.{json,md,svg}`);
