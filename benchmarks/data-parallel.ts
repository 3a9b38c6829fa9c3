/**
 * Data-parallel throughput on Open MPI: training samples/s of the seed's MNIST CNN (global batch 64) and of one
 * Transformer encoder layer (256/4/1024, 64 positions, global batch 16), two ranks of half the batch each vs one
 * process with the whole batch, at the same global batch so both take the same optimization step. Each process
 * is a separate `mpirun` launch of benchmarks/data-parallel-worker.ts. On this 2-core machine two ranks get one
 * kernel thread each (LOOM_THREADS=1) against one process with both threads: the comparison is processes vs
 * threads on the same cores, plus the cost of the all-reduce.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BENCH_DIR, entry, REPO, type Benchmark, type PeerResult } from './harness';

const SECONDS = 4;

/** Global samples/s of `np` ranks of `batch` each, or why it could not run. */
function launch(np: number, model: string, batch: number, threads: number, peer: string): PeerResult {
  const unit = 'samples/s';
  if (spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status !== 0)
    return { peer, value: null, unit, missing: 'mpirun not found (apt-get install openmpi-bin libopenmpi-dev)' };
  const args = [
    '--oversubscribe',
    '-np',
    String(np),
    '--mca',
    'btl',
    'self,tcp',
    '--mca',
    'btl_tcp_if_include',
    'lo',
    '--bind-to',
    'none',
    process.execPath,
    path.join(REPO, 'test/fixtures/run-ts.mjs'),
    path.join(BENCH_DIR, 'data-parallel-worker.ts'),
    model,
    String(batch),
    String(SECONDS),
  ];
  const env = { ...process.env, LOOM_THREADS: String(threads), OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
  const r = spawnSync('mpirun', args, { cwd: REPO, env, encoding: 'utf8', timeout: 300_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('{"value"'));
  if (r.status !== 0 || !line) {
    // mpirun frames its messages in lines of dashes: the first line with words says what went wrong.
    const said = `${r.error?.message ?? ''}\n${r.stderr ?? ''}\n${r.stdout ?? ''}`.split('\n').map((l) => l.trim());
    return { peer, value: null, unit, missing: said.find((l) => /[a-z]{3}/i.test(l)) ?? `exit status ${r.status}` };
  }
  const out = JSON.parse(line) as { value: number; detail: string };
  return { peer, value: out.value, unit, detail: out.detail };
}

export function dataParallel(): Benchmark {
  return {
    name: 'data-parallel',
    description: 'samples/s, 2 MPI ranks vs 1 process at the same global batch: MNIST CNN (64) and a Transformer encoder layer (16)',
    async run() {
      const out = [];
      for (const [model, global, label] of [
        ['mnist-cnn', 64, 'mnist-cnn'],
        ['transformer', 16, 'transformer encoder 256/4/1024 t64'],
      ] as const) {
        const two = launch(2, model, global / 2, 1, '2 ranks');
        const one = launch(1, model, global, 2, '1 process, 2 threads');
        const oneThread = launch(1, model, global, 1, '1 process, 1 thread');
        if (two.value === null) throw new Error(`data-parallel: 2 ranks did not run: ${two.missing}`);
        out.push(
          entry(`data-parallel ${label} global b${global}`, 'samples/s', two.value, `2 MPI ranks x b${global / 2}, 1 kernel thread each; ${two.detail}`, [
            one,
            oneThread,
          ]),
        );
      }
      return out;
    },
  };
}
