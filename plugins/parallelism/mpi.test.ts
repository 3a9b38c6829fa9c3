/**
 * Data-parallel and pipeline training on Open MPI, with real `mpirun` launches on loopback. Each launch runs every
 * check of test/fixtures/mpi-worker.ts at once (mpirun and Node start-up dominate the time): all-reduce exact for
 * integers and within float32 rounding for floats, broadcast, send/recv, N ranks = one process on the combined
 * batch, only rank 0 logging, a pipeline of one stage per rank giving the unsplit model's gradients and, trained by
 * the trainer from a config, the weights of one process (only its last stage logging), and its checkpoints (every
 * stage's state, written by the last stage) resuming bit-identically on the same layout and on one process within
 * float32 rounding, as those of the hybrid data 2 × pipeline 2 layouts do; ZeRO stage 1 (sharded Adam
 * moments) following unsharded Adam, with 1/N of its state per rank, and its checkpoints resuming on the same layout
 * (bit-identically) and on another (one process). A rank
 * that throws must end the whole job with a non-zero status and a message naming it.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const hasMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const hasBinding = fs.existsSync(path.join(repo, 'native/mpi/build/Release/loom_mpi.node'));
/** Open MPI's pml monitoring component counts the bytes each rank sends (the communication model's check needs it). */
const hasMonitoring = hasMpirun && /MCA pml: monitoring/.test(spawnSync('ompi_info', [], { encoding: 'utf8' }).stdout ?? '');

function mpirun(np: number, mode: string, worker = 'test/fixtures/mpi-worker.ts', extra: string[] = []) {
  const args = [
    ...extra,
    '--oversubscribe',
    '-np',
    String(np),
    '--mca',
    'btl',
    'self,tcp',
    '--mca',
    'btl_tcp_if_include',
    'lo',
    process.execPath,
    path.join(repo, 'test/fixtures/run-ts.mjs'),
    path.join(repo, worker),
    ...mode.split(' '),
  ];
  // Each rank writes its results to a file of its own: mpirun interleaves long lines of several ranks on stdout.
  const results = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-mpi-'));
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', LOOM_THREADS: '1', LOOM_MPI_RESULTS: results };
  // A hang (a rank stuck in a collective) fails the test at the timeout instead of blocking the suite.
  const r = spawnSync('mpirun', args, { cwd: repo, env, encoding: 'utf8', timeout: 50_000 });
  const ranks = fs
    .readdirSync(results)
    .map((f) => JSON.parse(fs.readFileSync(path.join(results, f), 'utf8')) as RankResult)
    .sort((a, b) => a.rank - b.rank);
  fs.rmSync(results, { recursive: true, force: true });
  return { ...r, results: ranks };
}

interface RankResult {
  rank: number;
  size: number;
  checks: Record<string, { ok: boolean; detail: string }>;
  measures: Record<string, number>;
}

describe.skipIf(!hasMpirun)('Open MPI (needs mpirun: apt-get install openmpi-bin libopenmpi-dev)', () => {
  it('has the MPI binding built (npm run build:mpi)', () => {
    expect(hasBinding, 'native/mpi/build/Release/loom_mpi.node is missing: run `npm run build:mpi`').toBe(true);
  });

  for (const np of [2, 4]) {
    it(`-np ${np}: collectives, data parallel = combined batch, rank-0 logging, ${np}-stage pipeline = unsplit gradients = one process (its checkpoints resumed), ZeRO-1 = unsharded Adam (clipped once, by the whole gradient's norm)`, () => {
      const r = mpirun(np, 'checks');
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      const { results } = r;
      expect(results.map((x) => x.rank).sort()).toEqual(Array.from({ length: np }, (_, i) => i));
      const failed = results.flatMap((x) =>
        Object.entries(x.checks)
          .filter(([, c]) => !c.ok)
          .map(([name, c]) => `rank ${x.rank}: ${name} (${c.detail})`),
      );
      expect(failed).toEqual([]);
      expect(Object.keys(results.find((x) => x.rank === 0)!.checks).length).toBe(25);
      // ZeRO-1's optimizer state per rank, measured (bytes of Adam's m and v), against the unsharded state.
      const bytes = results.map((x) => x.measures.zeroMomentBytes!);
      console.log(`ZeRO-1 on ${np} ranks: Adam moments per rank ${bytes.join(', ')} B; unsharded ${results[0]!.measures.unshardedMomentBytes} B`);
    }, 60_000);
  }

  it("-np 4 hybrid: layouts D2×P2, D2×T2, D1×P2×T2 (groups as documented); setup broadcasts the weights once; D2×P2 one step = one process's gradients; D2×P2 (± ZeRO-1), D4 ZeRO-1, D2×T2, D1×P2×T2 trained = one process; checkpoints of D2×P2 (± ZeRO-1), D2×T2, D1×P2×T2 resumed, on the same layout and on others", () => {
    const r = mpirun(4, 'checks', 'test/fixtures/mpi-hybrid-worker.ts');
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const { results } = r;
    expect(results.map((x) => x.rank).sort()).toEqual([0, 1, 2, 3]);
    const failed = results.flatMap((x) =>
      Object.entries(x.checks)
        .filter(([, c]) => !c.ok)
        .map(([name, c]) => `rank ${x.rank}: ${name} (${c.detail})`),
    );
    expect(failed).toEqual([]);
    for (const x of results) expect(Object.keys(x.checks).length).toBe(17);
  }, 60_000);

  it("-np 4: communicators are freed (MPI_Comm_free) by free, by the hybrid strategy's dispose (90 splits in turn, over the binding's 64) and by disposeRun; a freed one refuses use", () => {
    const r = mpirun(4, 'comms', 'test/fixtures/mpi-hybrid-worker.ts');
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const failed = r.results.flatMap((x) =>
      Object.entries(x.checks)
        .filter(([, c]) => !c.ok)
        .map(([name, c]) => `rank ${x.rank}: ${name} (${c.detail})`),
    );
    expect(failed).toEqual([]);
    expect(r.results.map((x) => Object.keys(x.checks).length)).toEqual([4, 4, 4, 4]);
  }, 60_000);

  it("hybrid: a rank that throws while the others wait in their groups' collectives ends the whole job, naming it", () => {
    const r = mpirun(4, 'crash', 'test/fixtures/mpi-hybrid-worker.ts');
    expect(r.error, 'mpirun did not end: a rank is still waiting').toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain('unreachable');
    expect(r.stderr).toContain('loom: rank 3 of 4 failed: Error: deliberate failure on rank 3');
    expect(r.stderr).toMatch(/rank 3 of 4 is exiting with code 1; aborting the MPI job/);
  }, 60_000);

  it.skipIf(!hasMonitoring)(
    '-np 4: the bytes each rank sends per step (Open MPI monitoring) are what the communication model predicts (D2×P2; D4 with ZeRO-1; D2×T2) [needs ompi_info to list "MCA pml: monitoring"]',
    () => {
      // Open MPI's pml monitoring counts every byte each rank sends to each peer, collectives' own messages included,
      // and writes them at MPI_Finalize. The same run with 0 and with K steps differs by K steps' traffic exactly.
      // The collectives' algorithms are fixed to those the model counts: ring all-reduce and all-gather, recursive halving.
      const sent = (k: number) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-traffic-'));
        const monitoring = [
          '--mca',
          'pml_monitoring_enable',
          '2',
          '--mca',
          'pml_monitoring_enable_output',
          '3',
          '--mca',
          'pml_monitoring_filename',
          path.join(dir, 'prof'),
        ];
        const algorithms = [
          'coll_tuned_use_dynamic_rules',
          '1',
          'coll_tuned_allreduce_algorithm',
          '4',
          'coll_tuned_reduce_scatter_block_algorithm',
          '3',
          'coll_tuned_allgather_algorithm',
          '4',
        ];
        const r = mpirun(4, `traffic ${k}`, 'test/fixtures/mpi-hybrid-worker.ts', [
          ...monitoring,
          ...algorithms.flatMap((a, i) => (i % 2 === 0 ? ['--mca', a] : [a])),
        ]);
        expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
        // Lines "E|I <rank> <peer> <bytes> bytes <count> msgs sent ...": external (our sends) and internal (collectives').
        const bytes = [0, 1, 2, 3].map((rank) =>
          fs
            .readFileSync(path.join(dir, `prof.${rank}.prof`), 'utf8')
            .split('\n')
            .filter((l) => /^[EI]\t/.test(l))
            .reduce((n, l) => n + Number(l.split('\t')[3]!.split(' ')[0]), 0),
        );
        fs.rmSync(dir, { recursive: true, force: true });
        return { bytes, predicted: r.results.map((x) => x.measures.predictedPerStep!) };
      };
      const k = 4;
      const before = sent(0);
      const after = sent(k);
      const perStep = after.bytes.map((b, i) => (b - before.bytes[i]!) / k);
      console.log(`bytes sent per step by ranks 0-3: measured ${perStep.join(', ')}; model ${after.predicted.join(', ')}`);
      expect(perStep).toEqual(after.predicted);
    },
    120_000,
  );

  it('a rank that throws ends the whole job with a non-zero status and a message naming the rank and the error', () => {
    const r = mpirun(2, 'crash');
    expect(r.error, 'mpirun did not end: a rank is still waiting').toBeUndefined();
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain('unreachable');
    expect(r.stderr).toContain('loom: rank 1 of 2 failed: Error: deliberate failure on rank 1');
    expect(r.stderr).toMatch(/rank 1 of 2 is exiting with code 1; aborting the MPI job/);
  }, 60_000);
});
