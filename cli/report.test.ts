/** The reproduction report: measured numbers beside the references, scale and environment, curves as SVG. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JsonObject, PluginRegistry } from '../core';
import { experimentPaper, type PaperClaim } from '../runtime';
import type { StoredRun } from '../core/mlflow-store';
import { testRegistry } from '../test/harness';
import toyBlobs, { toyConfig } from '../test/toy-data';
import { Monitor } from '../plugins/callbacks/monitor';
import { buildReport, checkClaims, commitsOf, finalValue, machinesOf, recipeDifferences, restoredEpochOf, restoredText, wallTimeOf } from './report';
import { readRecords, readStore, recordOf, recordPath, writeRecord } from './records';

let registry: PluginRegistry;
let dir: string;
beforeEach(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-report-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('loom report', () => {
  it('puts every paper run beside its references, with scale, environment and learning curves', async () => {
    const store = path.join(dir, 'mlruns');
    const toy = experimentPaper({
      name: 'toy-paper',
      title: 'A toy paper',
      presets: { smoke: toyConfig(store, { trainer: { epochs: 3, batchSize: 16, validationSplit: 0.25, logEvery: 2 } }) as unknown as JsonObject },
      presetNotes: { smoke: 'seconds' },
      references: [{ metric: 'test_accuracy', label: 'published accuracy', value: 0.987, source: 'Doe et al. 2020, Table 1' }],
      scale: () => 'SMALLER THAN THE PAPER: 72 examples',
    });
    const result = await toy.run({ registry, preset: 'smoke' });
    const r = await buildReport({ store, out: path.join(dir, 'report'), papers: { 'toy-paper': toy } });
    expect(r.runs).toBe(1);
    const md = fs.readFileSync(r.markdown, 'utf8');
    const measured = `${(result.metrics.test_accuracy! * 100).toFixed(2)} %`;
    expect(md).toContain('## A toy paper');
    expect(md).toContain(`| published accuracy | ${measured} | 98.70 % | Doe et al. 2020, Table 1 |`);
    for (const s of [
      'scale: SMALLER THAN THE PAPER: 72 examples',
      'seeds: 7',
      `backend: ${result.backend}`,
      `commit: ${result.commit}`,
      'status: FINISHED',
      'wall time: ',
    ])
      expect(md).toContain(s);
    const svg = md.match(/!\[learning curves\]\((.+\.svg)\)/)![1]!;
    const chart = fs.readFileSync(path.join(dir, 'report', svg), 'utf8');
    expect(chart).toMatch(/^<svg/);
    for (const k of ['val_loss', 'batch_loss', 'accuracy']) expect(chart).toContain(k);
    const html = fs.readFileSync(r.html, 'utf8');
    expect(html).toContain(`<td>published accuracy</td><td>${measured}</td>`);
    expect(html).toContain('<svg');
  });

  it('aggregates seeds (mean ± sample std, each seed listed), shows a rerun once, and reads committed records', async () => {
    const store = path.join(dir, 'mlruns');
    const toy = experimentPaper({
      name: 'toy-paper',
      title: 'A toy paper',
      presets: { smoke: toyConfig(store, { trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, logEvery: 2 } }) as unknown as JsonObject },
      presetNotes: { smoke: 'seconds' },
      references: [{ metric: 'test_accuracy', label: 'published accuracy', value: 0.987, source: 'Doe et al. 2020, Table 1' }],
      scale: () => 'SMALLER THAN THE PAPER',
    });
    const a = await toy.run({ registry, preset: 'smoke', seed: 1 });
    const b = await toy.run({ registry, preset: 'smoke', seed: 2 });
    await toy.run({ registry, preset: 'smoke', seed: 2 }); // a rerun: same seed, same commit
    const accs = [a.metrics.test_accuracy!, b.metrics.test_accuracy!];
    const mean = (accs[0]! + accs[1]!) / 2;
    const sd = Math.abs(accs[0]! - accs[1]!) / Math.SQRT2; // sample std of two values
    const pct = (v: number) => `${(v * 100).toFixed(2)} %`;
    // Records: the seed-1 run is moved out of the store into a committed record; the report still shows it.
    const repo = path.join(dir, 'repo');
    const run1 = readStore(store).find((r) => r.tags.seed === '1')!;
    const rec = recordOf(run1);
    expect(rec).toMatchObject({ paper: 'toy-paper', preset: 'smoke', seed: 1, commit: a.commit, resumedFrom: [] });
    expect(rec.run.metrics.loss!.length).toBeGreaterThan(0);
    expect(rec.config).toMatchObject({ trainer: { epochs: 2 } });
    // The steps a run was resumed from: its loom.resumed.<step> tags and its final status reason.
    expect(
      recordOf({ ...run1, tags: { ...run1.tags, 'loom.resumed.12': '/ckpt', 'loom.status_reason': 'finished after resuming from step 40' } }).resumedFrom,
    ).toEqual([12, 40]);
    // A run resumed on later checkouts: its first commit, then each other commit with the step it ran from.
    const spanning = {
      ...run1,
      tags: {
        ...run1.tags,
        'git.commit': 'aaa',
        'loom.resumed.90.commit': 'ccc',
        'loom.resumed.12.commit': 'aaa',
        'loom.resumed.40.commit': 'bbb',
        'loom.resumed.95.commit': 'ccc',
      },
    };
    expect(commitsOf(spanning)).toBe('aaa (bbb from step 40, ccc from step 90)');
    expect(commitsOf({ ...run1, tags: { ...run1.tags, 'git.commit': 'aaa', 'loom.resumed.12.commit': 'aaa' } })).toBe('aaa');
    // Wall time: a run resumed since checkpoints carry the time sums its processes; an earlier one says it does not.
    const timed = (tags: Record<string, string>) =>
      wallTimeOf({ ...run1, tags: { ...run1.tags, ...tags }, metrics: { ...run1.metrics, wall_time_s: [[50, 1234.56]] } });
    expect(timed({})).toBe('1234.6 s');
    expect(timed({ 'loom.resumed.40': '/c', 'loom.resumed.12': '/c', 'loom.resumed.40.commit': 'bbb', 'loom.wall_time': 'every process' })).toBe(
      '1234.6 s (summed over 3 processes; resumed from steps 12, 40)',
    );
    expect(timed({ 'loom.resumed.40': '/c' })).toBe("1234.6 s (the last process only, resumed from step 40; the earlier processes' time was not recorded)");
    expect(timed({ 'loom.resumed.40': '/c', 'loom.wall_time': 'the last process only (resumed from step 40, ...)' })).toMatch(
      /the last process only, resumed from step 40/,
    );
    expect(wallTimeOf({ ...run1, metrics: {} })).toBeNull();
    // A run that ended with an earlier epoch's weights (early stopping's restoreBest) reports that epoch's validation.
    const restored = {
      ...run1,
      tags: { ...run1.tags, 'loom.restored_epoch': '2' },
      metrics: {
        epoch: [
          [10, 1],
          [20, 2],
          [30, 3],
        ] as [number, number][],
        val_loss: [
          [10, 0.9],
          [20, 0.5],
          [30, 0.7],
        ] as [number, number][],
        loss: [[30, 0.2]] as [number, number][],
        test_loss: [[30, 0.55]] as [number, number][],
      },
    };
    expect([finalValue(restored, 'val_loss'), finalValue(restored, 'test_loss'), finalValue(restored, 'loss')]).toEqual([0.5, 0.55, 0.2]);
    expect(finalValue({ ...restored, tags: run1.tags }, 'val_loss')).toBe(0.7);
    // A run from before the tag: its config's early stopping (restoreBest) is replayed on the logged metric.
    const untagged = { ...restored, tags: run1.tags };
    const es = (o: Record<string, unknown>) => ({ callbacks: ['progress', { type: 'early-stopping', monitor: 'val_loss', ...o }] });
    expect(finalValue(untagged, 'val_loss', es({ restoreBest: true }))).toBe(0.5);
    expect(restoredEpochOf(untagged, es({ restoreBest: true }))).toEqual({ epoch: 2, inferred: true });
    expect(restoredEpochOf(restored, es({ restoreBest: true }))).toEqual({ epoch: 2, inferred: false });
    expect(restoredEpochOf(untagged, es({ restoreBest: false }))).toBeUndefined();
    expect(restoredEpochOf(untagged, es({ restoreBest: true, monitor: 'val_accuracy' }))).toBeUndefined();
    expect(finalValue(untagged, 'val_loss', es({ restoreBest: true, minDelta: 0.5 }))).toBe(0.9); // 0.5 is no improvement on 0.9 by > 0.5
    // How the report's group says it.
    expect(restoredText(restored, null, false)).toBe("epoch 2 of 3 (early stopping's restoreBest)");
    expect(restoredText(untagged, es({ restoreBest: true }), true)).toBe(
      "seed 1: epoch 2 of 3 (early stopping's restoreBest; inferred from the logged metric it monitored: the run predates the tag loom.restored_epoch)",
    );
    expect(restoredText({ ...restored, tags: { ...run1.tags, 'loom.restored_epoch': '3' } }, null, false)).toBe(
      "epoch 3 of 3, the last (early stopping's restoreBest)",
    );
    expect(restoredText(untagged, null, false)).toBeNull();
    // The replay is early stopping's own rule (its Monitor), for any values, mode and minDelta, also where a resumed
    // run logged an epoch twice (the later value counts, as the callback saw it).
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: 1, maxLength: 30 }),
        fc.constantFrom<'min' | 'max'>('min', 'max'),
        fc.constantFrom(0, 0.01, 0.5),
        fc.nat({ max: 29 }),
        (vals, mode, minDelta, again) => {
          const epochs: [number, number][] = vals.map((_, i) => [(i + 1) * 10, i + 1]);
          const series: [number, number][] = vals.map((v, i) => [(i + 1) * 10, v]);
          if (again < vals.length) {
            // A resume re-logged this epoch's step with its value: both points are in the store.
            epochs.push([(again + 1) * 10, again + 1]);
            series.push([(again + 1) * 10, vals[again]!]);
          }
          const monitor = new Monitor('early-stopping', 'val_loss', mode, minDelta);
          let best: number | undefined;
          vals.forEach((v, i) => {
            if (monitor.update(v)) best = i + 1;
          });
          const run = { ...run1, metrics: { epoch: epochs, val_loss: series } };
          expect(restoredEpochOf(run, es({ restoreBest: true, mode, minDelta }))?.epoch).toBe(best);
        },
      ),
    );
    // The machine: the first process's, then each resume's where it differs.
    const m = { 'cpu.model': 'EPYC', 'cpu.id': 'zen4', backend: 'native-cpu', 'backend.simd': 'avx2', 'backend.threads': '1' };
    const moved = { ...run1, tags: { ...run1.tags, ...m } };
    expect(machinesOf(moved)).toBe('EPYC (zen4), native-cpu avx2, 1 thread(s)');
    expect(machinesOf({ ...moved, tags: { ...moved.tags, 'loom.resumed.5.machine': 'EPYC (zen4), native-cpu avx2, 1 thread(s)' } })).toBe(
      'EPYC (zen4), native-cpu avx2, 1 thread(s)',
    );
    expect(
      machinesOf({
        ...moved,
        tags: {
          ...moved.tags,
          'loom.resumed.90.machine': 'B',
          'loom.resumed.40.machine': 'EPYC (zen4), native-cpu avx2, 1 thread(s)',
          'loom.resumed.60.machine': 'A',
        },
      }),
    ).toBe('EPYC (zen4), native-cpu avx2, 1 thread(s) (then A from step 60, then B from step 90)');
    writeRecord(recordPath(repo, rec), rec);
    expect(readRecords(repo).map((r) => r.run.runId)).toEqual([run1.runId]);
    fs.rmSync(run1.dir!, { recursive: true });
    const r = await buildReport({ store, out: path.join(dir, 'report'), papers: { 'toy-paper': toy }, records: repo });
    expect(r.runs).toBe(3);
    const md = fs.readFileSync(r.markdown, 'utf8');
    expect(md).toContain(`| published accuracy | ${pct(mean)} ± ${pct(sd)} (2 seeds: `);
    expect(md).toContain(`1: ${pct(accs[0]!)}`);
    expect(md).toContain('- runs: 2 (1 rerun(s) of the same seed and commit not shown)');
    expect(md.match(/!\[learning curves\]/g)).toHaveLength(1);
    // A later record of the same run (trained further after a resume) replaces the earlier one in the report.
    const later = JSON.parse(JSON.stringify(rec));
    later.run.end = (rec.run.end ?? 0) + 1000;
    later.run.metrics.test_accuracy = [[999, 0.5]];
    writeRecord(path.join(repo, 'papers', 'toy-paper', 'results', 'smoke-seed1-later.json'), later);
    const r2 = await buildReport({ store, out: path.join(dir, 'report2'), papers: { 'toy-paper': toy }, records: repo });
    expect(r2.runs).toBe(3);
    expect(fs.readFileSync(r2.markdown, 'utf8')).toContain('1: 50.00 %');
    // An unfinished record (a run stopped at step 7 by SIGINT): its own group, with its last step and why it ended.
    const stopped = recordOf(
      {
        ...run1,
        runId: 'stopped0',
        status: 'KILLED',
        start: run1.start + 5000,
        tags: { ...run1.tags, seed: '9', 'loom.status_reason': 'interrupted by SIGINT after step 7', 'loom.resumed.5.machine': 'another machine' },
        metrics: {
          loss: [
            [5, 0.7],
            [7, 0.6],
          ],
          val_loss: [[4, 0.8]],
        },
      },
      { unfinished: true },
    );
    expect(stopped.unfinished).toEqual({ status: 'KILLED', lastStep: 7, reason: 'interrupted by SIGINT after step 7' });
    expect(() => recordOf({ ...run1, status: 'KILLED' })).toThrow(/not FINISHED.*--unfinished/);
    writeRecord(recordPath(repo, stopped), stopped);
    expect(fs.existsSync(path.join(repo, 'papers', 'toy-paper', 'results', 'smoke-seed9.unfinished.json'))).toBe(true);
    const md3 = fs.readFileSync((await buildReport({ store, out: path.join(dir, 'report3'), papers: { 'toy-paper': toy }, records: repo })).markdown, 'utf8');
    expect(md3).toContain('### smoke (KILLED)');
    expect(md3).toMatch(/### smoke \(KILLED\)[^#]*- last step: 7\n- ended: interrupted by SIGINT after step 7\n/);
    // Its resume at step 5 ran on another machine: a 'machines' row in its group only.
    expect(md3).toMatch(/### smoke \(KILLED\)[^#]*- machines: [^\n]*\(then another machine from step 5\)\n/);
    expect(md3.match(/- machines: /g)).toHaveLength(1);
    // A run resumed and still going keeps the reason its previous process stopped: the report says it is running.
    const going = recordOf(
      {
        ...run1,
        runId: 'going0',
        status: 'RUNNING',
        tags: { ...run1.tags, seed: '8', 'loom.status_reason': 'interrupted by SIGINT after step 3' },
        metrics: { loss: [[9, 0.5]] },
      },
      { unfinished: true },
    );
    writeRecord(recordPath(repo, going), going);
    const md4 = fs.readFileSync((await buildReport({ store, out: path.join(dir, 'report4'), papers: { 'toy-paper': toy }, records: repo })).markdown, 'utf8');
    expect(md4).toMatch(/### smoke \(RUNNING\)[^#]*- last step: 9\n- ended: still running\n/);
    fs.rmSync(recordPath(repo, going));
    // The finished run's record replaces the unfinished one of the same run.
    const done = recordOf({ ...run1, runId: 'stopped0', tags: { ...run1.tags, seed: '9' } });
    writeRecord(recordPath(repo, done), done);
    expect(fs.readdirSync(path.join(repo, 'papers', 'toy-paper', 'results')).filter((f) => f.includes('seed9'))).toEqual(['smoke-seed9.json']);
  });

  it("a few-shot grid's runs: each size grouped on its own, one record file each, and learning curves over the labelled examples", async () => {
    // A grid written as committed records (the runs' own store is not needed): 2 variants × sizes 10, 'all' (40
    // examples) × seeds 0-1, with known final test scores.
    const repo = path.join(dir, 'repo');
    const score = (variant: string, size: string, seed: number) => (variant === 'pretrained' ? 0.6 : 0.5) + (size === 'all' ? 0.3 : 0) + seed * 0.02;
    const files = new Set<string>();
    let id = 0;
    for (const variant of ['pretrained', 'scratch'])
      for (const size of ['10', 'all'])
        for (const seed of [0, 1]) {
          const tags = {
            paper: 'toy-paper',
            preset: 'grid',
            variant,
            seed: String(seed),
            'git.commit': 'abc',
            'few_shot.size': size,
            'few_shot.examples': size === 'all' ? '40' : size,
          };
          const metrics: Record<string, [number, number][]> = {
            loss: [
              [1, 1],
              [2, 0.5],
            ],
            test_accuracy: [[2, score(variant, size, seed)]],
            test_f1: [[2, score(variant, size, seed) - 0.1]],
          };
          const rec = recordOf({ runId: `run${id}`, runName: `r${id}`, status: 'FINISHED', start: ++id, end: id + 1, tags, metrics });
          expect(rec.subset).toBe(size);
          const file = recordPath(repo, rec);
          files.add(path.basename(file));
          writeRecord(file, rec);
        }
    // One file per (variant, size, seed): the size is in the name.
    expect(files.size).toBe(8);
    expect(files).toContain('grid-pretrained-n10-seed0.json');
    expect(files).toContain('grid-scratch-nall-seed1.json');
    const toy = experimentPaper({ name: 'toy-paper', title: 'A toy paper', presets: {}, presetNotes: {}, references: [], scale: () => '' });
    const r = await buildReport({ store: path.join(dir, 'none'), out: path.join(dir, 'report'), papers: { 'toy-paper': toy }, records: repo });
    expect(r.runs).toBe(8);
    const md = fs.readFileSync(r.markdown, 'utf8');
    for (const key of ['grid / pretrained / 10 labelled', 'grid / pretrained / all labelled', 'grid / scratch / 10 labelled', 'grid / scratch / all labelled'])
      expect(md).toContain(`### ${key}\n`);
    expect(md).toContain('### grid: learning curves over labelled examples');
    // Mean ± sample s.d. of two seeds 0.02 apart: 0.02/√2 = 1.41 points.
    expect(md).toContain('| labelled examples | pretrained: accuracy | pretrained: F1 | scratch: accuracy | scratch: F1 |');
    expect(md).toContain('| 10 | 61.00 % ± 1.41 % (2) | 51.00 % ± 1.41 % (2) | 51.00 % ± 1.41 % (2) | 41.00 % ± 1.41 % (2) |');
    expect(md).toContain('| all (40) | 91.00 % ± 1.41 % (2) | 81.00 % ± 1.41 % (2) | 81.00 % ± 1.41 % (2) | 71.00 % ± 1.41 % (2) |');
    const svg = md.match(/!\[grid: learning curves over labelled examples\]\((.+\.svg)\)/)![1]!;
    const chart = fs.readFileSync(path.join(dir, 'report', svg), 'utf8');
    expect(chart).toMatch(/^<svg/);
    expect(chart).toContain('labelled examples');
  });

  it("checks a paper's claims: variants ranked within each preset, presets ranked across, on the mean over seeds", async () => {
    let id = 0;
    const run = (tags: Record<string, string>, metric: string, value: number, status = 'FINISHED'): StoredRun => ({
      runId: `c${++id}`,
      runName: `c${id}`,
      status,
      start: id,
      end: id + 1,
      tags: { paper: 'toy-paper', seed: '0', 'git.commit': 'abc', ...tags },
      metrics: { [metric]: [[10, value]] },
    });
    const ppl = 'test_perplexity';
    const variants: PaperClaim = {
      statement: 'a < b < c in test perplexity',
      source: 'Doe 2020',
      metric: ppl,
      better: 'lower',
      order: ['a', 'b', 'c'].map((v) => ({ label: v, variant: v })),
      varies: ['model'],
    };
    const runs = [
      // Preset p: two seeds each; the means are a 100, b 110, c 120: the claimed order.
      ...[
        ['a', 90, 110],
        ['b', 105, 115],
        ['c', 119, 121],
      ].flatMap(([v, x, y]) => [run({ preset: 'p', variant: String(v) }, ppl, Number(x)), run({ preset: 'p', variant: String(v), seed: '1' }, ppl, Number(y))]),
      // Preset q: the reverse, one seed each; an unfinished run of a does not count, nor an older run of c's seed.
      run({ preset: 'q', variant: 'c' }, ppl, 50),
      run({ preset: 'q', variant: 'a' }, ppl, 140),
      run({ preset: 'q', variant: 'b' }, ppl, 130),
      run({ preset: 'q', variant: 'a' }, ppl, 1, 'KILLED'),
      run({ preset: 'q', variant: 'c' }, ppl, 120),
      // Preset r: a and b only (c not measured); preset s: a alone (nothing to rank); preset t: a tie.
      run({ preset: 'r', variant: 'a' }, ppl, 1),
      run({ preset: 'r', variant: 'b' }, ppl, 2),
      run({ preset: 's', variant: 'a' }, ppl, 1),
      ...['a', 'b', 'c'].map((v, i) => run({ preset: 't', variant: v }, ppl, i === 2 ? 3 : 2)),
    ].reverse(); // newest first, as the report reads them
    const checks = checkClaims([variants], runs);
    expect(checks.map((c) => [c.where, c.measured, c.verdict])).toEqual([
      ['p', 'a 100.0 < b 110.0 < c 120.0 (2 seeds each)', 'reproduced'],
      ['q', 'c 120.0 < b 130.0 < a 140.0 (1 seed each)', 'not reproduced'],
      ['r', 'a 1.00 < b 2.00 (1 seed each; not measured: c)', 'not all measured'],
      ['t', 'a 2.00 < b 2.00 < c 3.00 (1 seed each)', 'not reproduced'],
    ]);
    // Presets compared across (higher is better here): once, whatever other presets ran.
    const acc = 'test_accuracy';
    const presets: PaperClaim = {
      statement: 'big > small',
      source: 'Doe 2020',
      metric: acc,
      better: 'higher',
      order: [
        { label: 'big', preset: 'big' },
        { label: 'small', preset: 'small' },
      ],
      varies: ['model'],
    };
    const across = [run({ preset: 'small' }, acc, 0.9), run({ preset: 'big' }, acc, 0.8), run({ preset: 'other' }, acc, 0.99)].reverse();
    expect(checkClaims([presets], across)).toEqual([
      { statement: 'big > small', source: 'Doe 2020', where: 'big, small', measured: 'small 90.00 % > big 80.00 % (1 seed each)', verdict: 'not reproduced' },
    ]);
    expect(checkClaims([presets], [run({ preset: 'small' }, acc, 0.9)]).map((c) => [c.measured, c.verdict])).toEqual([
      ['small 90.00 % (1 seed; not measured: big)', 'not all measured'],
    ]);
    // In the report: a Claims table at the top of the paper's section (these records hold no configs: said so).
    const repo = path.join(dir, 'repo');
    for (const r of runs.filter((r) => r.tags.preset === 'p')) writeRecord(path.join(repo, 'papers', 'toy-paper', 'results', `${r.runId}.json`), recordOf(r));
    const toy = {
      ...experimentPaper({ name: 'toy-paper', title: 'A toy paper', presets: {}, presetNotes: {}, references: [], scale: () => '' }),
      claims: [variants],
    };
    const md = fs.readFileSync(
      (await buildReport({ store: path.join(dir, 'none'), out: path.join(dir, 'report'), papers: { 'toy-paper': toy }, records: repo })).markdown,
      'utf8',
    );
    expect(md).toMatch(
      /## A toy paper\n\n### Claims\n\n\| claim \|.*\n\| --- .*\n\| a < b < c in test perplexity \| p \| a 100\.0 < b 110\.0 < c 120\.0 \(2 seeds each\) \| \*\*reproduced\*\*: config not recorded, recipe not checked: a seed 0, a seed 1, b seed 0, b seed 1, c seed 0, c seed 1 \| Doe 2020 \|\n/,
    );
  });
  it("ranks a claim's runs only when they share the recipe but for what the claim varies", async () => {
    const base = {
      experiment: 'x',
      seed: 0,
      model: { layers: [{ type: 'lstm', units: 8 }] },
      optimizer: { type: 'sgd', lr: 35 },
      callbacks: ['progress', { type: 'early-stopping', patience: 3 }],
      trackers: ['mlflow-file'],
      trainer: { epochs: 39, clipNorm: 0.5, logEvery: 50, checkpoint: { everySteps: 500 } },
    };
    const withPath = (c: unknown, p: string[], v: unknown): unknown => {
      if (p.length === 0) return v;
      const o = structuredClone(c) as Record<string, unknown>;
      o[p[0]!] = withPath(o[p[0]!] ?? {}, p.slice(1), v);
      return o;
    };
    // Any change of a recipe field is named, once, with the labels of each value; a change under `varies`, or of a
    // field that does not change the numbers, is not.
    const recipeField = fc.constantFrom<string[]>(
      ['optimizer', 'lr'],
      ['optimizer', 'type'],
      ['trainer', 'epochs'],
      ['trainer', 'clipNorm'],
      ['data', 'batchSize'],
    );
    const at = (c: unknown, p: string[]) => p.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], c);
    fc.assert(
      fc.property(recipeField, fc.oneof(fc.integer(), fc.string(), fc.boolean()), (p, v) => {
        fc.pre(JSON.stringify(v) !== JSON.stringify(at(base, p)));
        const was = at(base, p) === undefined ? 'absent' : JSON.stringify(at(base, p));
        const changed = withPath(base, p, v);
        expect(
          recipeDifferences(
            [
              { label: 'a', config: base },
              { label: 'b', config: changed },
              { label: 'c', config: base },
            ],
            [],
          ),
        ).toEqual([`${p.join('.')}: ${was} (a, c), ${JSON.stringify(v)} (b)`]);
        expect(
          recipeDifferences(
            [
              { label: 'a', config: withPath(base, ['model', ...p], v) },
              { label: 'b', config: base },
            ],
            ['model'],
          ),
        ).toEqual([]);
      }),
    );
    const benign = [
      withPath(base, ['seed'], 1),
      withPath(base, ['experiment'], 'y'),
      withPath(base, ['trackers'], []),
      withPath(base, ['trainer', 'logEvery'], 10),
      withPath(base, ['trainer', 'checkpoint', 'everySteps'], 100),
      { ...base, callbacks: [{ type: 'early-stopping', patience: 3 }] }, // no progress display
    ];
    for (const c of benign)
      expect(
        recipeDifferences(
          [
            { label: 'a', config: base },
            { label: 'b', config: c },
          ],
          [],
        ),
      ).toEqual([]);
    // A callback one run had and the other did not (early stopping) is a difference.
    expect(
      recipeDifferences(
        [
          { label: 'a', config: base },
          { label: 'b', config: { ...base, callbacks: ['progress'] } },
        ],
        [],
      ),
    ).toEqual(['callbacks.0.patience: 3 (a), absent (b)', 'callbacks.0.type: "early-stopping" (a), absent (b)']);

    // In checkClaims: the lr of one variant differs (the variational LSTM's runs before and after its lr fix).
    let id = 0;
    const run = (variant: string, value: number, seed = '0'): StoredRun => ({
      runId: `r${++id}`,
      runName: `r${id}`,
      status: 'FINISHED',
      start: id,
      end: id + 1,
      tags: { paper: 'toy-paper', seed, 'git.commit': 'abc', preset: 'p', variant },
      metrics: { test_perplexity: [[10, value]] },
    });
    const claim: PaperClaim = {
      statement: 'a < b',
      source: 'Doe 2020',
      metric: 'test_perplexity',
      better: 'lower',
      order: ['a', 'b'].map((v) => ({ label: v, variant: v })),
      varies: ['model'],
    };
    const runs = [run('a', 100), run('b', 120)].reverse();
    const configs = new Map<string, unknown>([
      ['r1', withPath(base, ['model', 'layers'], [{ type: 'lstm', units: 8, dropout: 0.5 }])],
      ['r2', withPath(base, ['optimizer', 'lr'], 1)],
    ]);
    const configOf = (r: StoredRun) => configs.get(r.runId) ?? null;
    expect(checkClaims([claim], runs, configOf)).toEqual([
      {
        statement: 'a < b',
        source: 'Doe 2020',
        where: 'p',
        measured: 'a 100.0 < b 120.0 (1 seed each)',
        verdict: 'recipes differ',
        recipe: ['optimizer.lr: 35 (a), 1 (b)'],
      },
    ]);
    // The same lr: the model differs only, as the claim allows: ranked.
    configs.set('r2', base);
    expect(checkClaims([claim], runs, configOf).map((c) => [c.verdict, c.recipe])).toEqual([['reproduced', undefined]]);
    // A run without its config is ranked but said to be unchecked; without configOf nothing is checked.
    configs.delete('r2');
    expect(checkClaims([claim], runs, configOf).map((c) => [c.verdict, c.recipe])).toEqual([
      ['reproduced', ['config not recorded, recipe not checked: b seed 0']],
    ]);
    expect(checkClaims([claim], runs).map((c) => [c.verdict, c.recipe])).toEqual([['reproduced', undefined]]);
    // Seeds of one variant run with two recipes are caught too.
    configs.set('r2', base);
    const more = [...runs.slice().reverse(), run('b', 118, '1')].reverse();
    configs.set('r3', withPath(base, ['trainer', 'clipNorm'], 5));
    expect(checkClaims([claim], more, configOf)[0]!.recipe).toEqual(['trainer.clipNorm: 0.5 (a, b), 5 (b)']);

    // In the report, from committed records: the verdict cell names the fields.
    const repo = path.join(dir, 'repo');
    configs.set('r2', withPath(base, ['optimizer', 'lr'], 1));
    for (const r of runs)
      writeRecord(path.join(repo, 'papers', 'toy-paper', 'results', `${r.runId}.json`), { ...recordOf(r), config: configs.get(r.runId) ?? null });
    const toy = {
      ...experimentPaper({ name: 'toy-paper', title: 'A toy paper', presets: {}, presetNotes: {}, references: [], scale: () => '' }),
      claims: [claim],
    };
    const md = fs.readFileSync(
      (await buildReport({ store: path.join(dir, 'none'), out: path.join(dir, 'report'), papers: { 'toy-paper': toy }, records: repo })).markdown,
      'utf8',
    );
    expect(md).toContain('| a < b | p | a 100.0 < b 120.0 (1 seed each) | **recipes differ**: optimizer.lr: 35 (a), 1 (b) | Doe 2020 |');
  });
});
