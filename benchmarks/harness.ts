/**
 * Benchmark plumbing: steady-state timing (warm-up, then the median of several windows), running peers in their
 * own processes (Python with PyTorch/numpy, or tfjs on its stock backend), and the result record.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { cpuFlags } from '../runtime/environment';
import { PYTHON, candidateCores, otherCapabilities, peerBlas, peerEnv, simdCap, torchOwnCapability } from './peer-blas';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(BENCH_DIR, '..');

export interface PeerResult {
  peer: string;
  value: number | null;
  unit: string;
  detail?: string;
  /** Why the peer could not run (reported, never silently skipped). */
  missing?: string;
}

export interface BenchEntry {
  name: string;
  unit: string;
  ours: number;
  oursDetail: string;
  peers: PeerResult[];
  /** ours / the first peer that ran (the one the target is stated against). */
  ratio: number | null;
  target?: number;
  /** Why the row is printed but not written to results/ (e.g. webgpu on a software adapter: not a GPU timing). */
  unrecorded?: string;
}

export interface Benchmark {
  name: string;
  description: string;
  run(): Promise<BenchEntry[]>;
}

export interface MeasureOptions {
  seconds?: number;
  repeats?: number;
  warmup?: number;
}

/** Items per second of `step`: `warmup` calls, then `repeats` windows of at least `seconds` (and 2 calls); the median. */
export async function measure(step: () => unknown, itemsPerStep: number, opts: MeasureOptions = {}): Promise<number> {
  const { seconds = 3, repeats = 3, warmup = 2 } = opts;
  for (let i = 0; i < warmup; i++) await step();
  const rates: number[] = [];
  for (let r = 0; r < repeats; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000 || n < 2) {
      await step();
      n++;
    }
    rates.push((n * itemsPerStep) / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

/** V8's full collection, made callable at run time (the benchmarks run under tsx, without --expose-gc). */
function fullCollection(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/**
 * A note on live tensors and RSS over `steps` more calls of a warm `step`, sampled every `every` calls just after a
 * full collection. Without it RSS is a sawtooth of V8's collections whose period here was up to ~5,000 MNIST
 * steps (b128: 251 → 303 → 262 MiB over 12,000 steps), longer than the window, so a rising edge read as growth.
 * Flat: live tensors constant and the second half's highest sample within 5 % of the first half's.
 */
export async function memoryTrend(step: () => unknown, steps = 2000, every = 250, numTensors: () => number): Promise<string> {
  const gc = fullCollection();
  const rss: number[] = [];
  const heap: number[] = [];
  const tensors0 = numTensors();
  for (let i = 1; i <= steps; i++) {
    await step();
    if (i % every === 0) {
      gc();
      const m = process.memoryUsage();
      rss.push(m.rss / 2 ** 20);
      heap.push((m.heapUsed + m.external) / 2 ** 20);
    }
  }
  const half = Math.floor(rss.length / 2);
  const [first, second] = [Math.max(...rss.slice(0, half)), Math.max(...rss.slice(half))];
  const flat = numTensors() === tensors0 && second <= first * 1.05;
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)} MiB`;
  return `over ${steps} further steps: tensors ${tensors0} -> ${numTensors()}, RSS after a full collection ${range(rss)} (highest ${first.toFixed(0)} in the first half, ${second.toFixed(0)} in the second: ${flat ? 'flat' : 'growing'}); V8 heap + external ${heap[0]!.toFixed(0)} -> ${heap.at(-1)!.toFixed(0)} MiB`;
}

/**
 * Runs `benchmarks/peers/<script>` with Debian's python3 and the BLAS setting {@link peerBlas} chose (the fastest
 * correct OpenBLAS core; OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE from this environment are not passed on). Returns the
 * JSON line it prints, with the BLAS library, core and threads added to its detail; a handicapped BLAS (the
 * reference BLAS, or only a generic core) is reported as the reason there is no value, never as a value.
 */
export function pythonPeer(script: string, args: (string | number)[], peer: string, unit: string, threads?: number, env: NodeJS.ProcessEnv = {}): PeerResult {
  const key = JSON.stringify([script, args, threads ?? null, env]);
  const settings = peerSettings(script).flatMap((s) => capabilityChoice.get(key)?.map((c) => withCapability(s, c)) ?? withCapabilities(script, s));
  const results = settings.map((setting) => {
    const r = pythonRun(script, args, threads, env, setting);
    if ('missing' in r) return { peer, value: null, unit, missing: r.missing, capability: setting?.capability };
    const out = r.out as { value: number; peer: string; detail?: string };
    return { peer: out.peer, value: out.value, unit, detail: [out.detail, r.blas].filter(Boolean).join('; '), capability: setting?.capability };
  });
  const { capability, ...winner } = best(results);
  // The ATen level is chosen at a peer's first run (both tried) and kept for its later rounds of the same call.
  if (!capabilityChoice.has(key) && winner.value !== null) capabilityChoice.set(key, [capability]);
  return winner;
}

/** A peer call's ATen capability, chosen at its first run: later rounds of {@link interleaved} run only that one. */
const capabilityChoice = new Map<string, (string | undefined)[]>();

/** A setting a Python peer runs under: an OpenBLAS core (`coretype`), and for PyTorch's an ATen level (`capability`). */
export type PeerSetting = { coretype?: string; capability?: string; detail: string } | undefined;

/**
 * The BLAS settings a peer script is tried under: numpy's peers (*_numpy.py) the core fastest at numpy's sgemm;
 * PyTorch's the core fastest at PyTorch's own small products and, where that is another core, the sgemm one too,
 * the faster reported. The small products rank the cores for decoding at batch 1, not for a training step's large
 * products: with the small-product core alone PyTorch's MNIST training at batch 128 ran 6,761 samples/s in one
 * quiet run against 8,832-8,932 on the sgemm core in the runs before (2-core AMD EPYC Zen 4).
 */
export function peerSettings(script: string): PeerSetting[] {
  const blas = peerBlas();
  if (script.includes('numpy') || !blas.torch || blas.torch.coretype === blas.coretype) return [undefined];
  return [blas.torch, { coretype: blas.coretype, detail: `${blas.detail} (the sgemm choice, also tried for PyTorch)` }];
}

/**
 * A PyTorch peer's setting under torch's own ATen level and under each other level worth trying here
 * ({@link otherCapabilities}: on an AVX-512 host, AVX2 and AVX-512 both); numpy's peers as they are.
 */
export function withCapabilities(script: string, setting: PeerSetting): PeerSetting[] {
  if (script.includes('numpy')) return [setting];
  const own = torchOwnCapability();
  const simd = candidateCores(cpuFlags(), simdCap()).simd;
  return [setting, ...otherCapabilities(simd, own).map((c) => withCapability(setting, c))];
}

function withCapability(setting: PeerSetting, capability: string | undefined): PeerSetting {
  if (capability === undefined) return setting;
  const blas = setting ?? peerBlas().torch ?? peerBlas();
  return { coretype: blas.coretype, detail: blas.detail, capability };
}

/** What a peer's detail says about its ATen level: torch's own choice, a level tried instead, or the AVX2 cap. */
function capabilityDetail(setting: PeerSetting): string {
  if (simdCap() === 'avx2') return 'ATen and oneDNN capped at AVX2 (LOOM_SIMD=avx2: ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA)';
  const own = torchOwnCapability();
  if (setting?.capability) return `ATen ${setting.capability.toUpperCase()} (ATEN_CPU_CAPABILITY; its own choice ${own ?? '?'})`;
  return `ATen ${own ?? '?'} (its own choice${otherCapabilities(candidateCores(cpuFlags()).simd, own).length ? '; the other level also tried' : ''})`;
}

/**
 * What {@link pythonPeer} runs, for a peer that reports more than one value: the script's last JSON line as it is,
 * with the BLAS detail, or why it could not run.
 */
export function pythonRun(
  script: string,
  args: (string | number)[],
  threads?: number,
  env: NodeJS.ProcessEnv = {},
  /** The BLAS core (and ATen level) to run under (default: numpy's choice for *_numpy.py, PyTorch's for every other peer). */
  blasSetting?: PeerSetting,
): { out: Record<string, unknown>; blas: string } | { missing: string } {
  if (!fs.existsSync(PYTHON)) return { missing: `${PYTHON} not found` };
  const blas = peerBlas();
  if (blas.handicap) return { missing: blas.handicap };
  // numpy's peers are named *_numpy.py; every other Python peer is PyTorch's, on the core chosen for its products.
  const setting = blasSetting ?? (!script.includes('numpy') && blas.torch ? blas.torch : blas);
  // Debian's torch runs its matrix products on OpenBLAS, whose own thread pool takes every core unless told
  // otherwise: with torch at 1 thread that oversubscribed a busy 2-core host and ran the G2P peer 3.5x slower
  // (24 against 84 words/s). A peer measured at `threads` gets OpenBLAS's pool of the same size.
  const r = spawnSync(PYTHON, [path.join(BENCH_DIR, 'peers', script), ...args.map(String)], {
    env: { ...peerEnv(setting.coretype, blasSetting?.capability), ...(threads ? { OPENBLAS_NUM_THREADS: String(threads) } : {}), ...env },
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || 'failed').trim().split('\n').at(-1)!;
    return { missing: why.includes('No module named') ? `${why} (apt-get install python3-torch python3-numpy libopenblas0-pthread)` : why };
  }
  const detail = script.includes('numpy') ? setting.detail : `${setting.detail}; ${capabilityDetail(blasSetting)}`;
  return { out: JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>, blas: detail };
}

/**
 * Idle threads of both of a PyTorch peer's pools sleep instead of spinning: OMP_WAIT_POLICY=PASSIVE for torch's
 * OpenMP pool, and OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles, OpenBLAS's minimum; its default 2^28 is ~0.1 s) for
 * OpenBLAS's own pthreads. At 2 threads on a 2-core host both pools spin after each region, so an OpenMP kernel
 * right after a matrix product shares its cores with OpenBLAS's spinning workers, and when anything else takes a
 * core the step collapses: in quiet calls on the 2-core Zen 4 where another process still ran at times, the MNIST
 * training peer at batch 32 and 2 threads ran 40-250 samples/s with the default waits and 2,200-6,200 with these.
 * With both cores free, 2 threads gained nothing over 1 there (batch 128: 4,700-5,100 against 5,150-5,400), so
 * this is one more setting to try, the fastest reported, not a replacement.
 */
export const PASSIVE_WAITS: NodeJS.ProcessEnv = { OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_THREAD_TIMEOUT: '4' };

/** A PyTorch peer's thread settings worth trying: 1 thread, 2 threads, and 2 threads with {@link PASSIVE_WAITS}. */
export const TORCH_SETTINGS: { threads: number; env: NodeJS.ProcessEnv }[] = [
  { threads: 1, env: {} },
  { threads: 2, env: {} },
  { threads: 2, env: PASSIVE_WAITS },
];

/** Runs a TypeScript peer (`benchmarks/peers/<script>`) in its own Node process, so it sees stock tfjs kernels. */
export function nodePeer(script: string, args: (string | number)[], peer: string, unit: string): PeerResult {
  const r = spawnSync(process.execPath, [path.join(REPO, 'node_modules/tsx/dist/cli.mjs'), path.join(BENCH_DIR, 'peers', script), ...args.map(String)], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.status !== 0) return { peer, value: null, unit, missing: (r.stderr || 'failed').trim().split('\n').at(-1) };
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { value: number; detail?: string };
  return { peer, value: out.value, unit, detail: out.detail };
}

/**
 * Ours and a peer measured in alternation, `rounds` times, each side reported as the median of its rounds (the peer's
 * with that round's detail). Load on a shared host drifts over minutes (a core's throughput here moves between ~65
 * and ~100 GFLOP/s), and measuring one side entirely before the other let that drift decide the ratio.
 */
export async function interleaved(ours: () => Promise<number>, peer: () => PeerResult, rounds = 3): Promise<{ ours: number; peer: PeerResult }> {
  const mine: number[] = [];
  const theirs: PeerResult[] = [];
  for (let r = 0; r < rounds; r++) {
    mine.push(await ours());
    const p = peer();
    if (p.value === null) return { ours: median(mine), peer: p };
    theirs.push(p);
  }
  theirs.sort((a, b) => a.value! - b.value!);
  return { ours: median(mine), peer: theirs[Math.floor(theirs.length / 2)]! };
}

/** The middle value of `xs` (the upper middle for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The best of several peer runs (e.g. one per thread setting), keeping the detail that says which won. */
export function best<T extends PeerResult>(results: T[]): T {
  const ran = results.filter((r) => r.value !== null);
  if (ran.length === 0) return results[0]!;
  return ran.reduce((a, b) => (b.value! > a.value! ? b : a));
}

export function entry(name: string, unit: string, ours: number, oursDetail: string, peers: PeerResult[], target?: number): BenchEntry {
  const primary = peers.find((p) => p.value !== null);
  return { name, unit, ours, oursDetail, peers, ratio: primary ? ours / primary.value! : null, target };
}
