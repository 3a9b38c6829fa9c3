/**
 * Conformance of the plugins that read and write outside the process, generated from the registry (see
 * conformance.test.ts): one test per plugin per property.
 * Trackers: a run's params, metrics (every value at its step, in order), tags and final status read back from the
 * store it writes (the MLflow file store from disk; the REST tracker from test/mlflow-fake-server.ts).
 * Data sets: every split loads the same examples twice; batches have the declared shapes and finite values; the
 * lengths, where given, are one per example and fit in an input row. They compute no tensor maths, so they run once.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { readStore } from '../core/mlflow-store';
import type { Dataset, DataSource, JsonObject, RunInfo, Tracker } from '../core';
import { WordPiece } from '../plugins/tokenizers/wordpiece';
import { spamAssassinTexts, spamTextSchema } from '../plugins/data/spam-assassin';
import { conformanceRegistry, eachPlugin, expectSpecRoundTrip } from './harness';
import { startFakeMlflow, type FakeMlflow } from './mlflow-fake-server';

const { registry } = await conformanceRegistry();

const dirs: string[] = [];
const tempDir = () => {
  dirs.push(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-conformance-')));
  return dirs.at(-1)!;
};
const servers: FakeMlflow[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
});

/** What a store holds of one run. */
interface StoredRun {
  status: string;
  params: Record<string, string>;
  tags: Record<string, string>;
  /** key -> [step, value] in logging order. */
  metrics: Record<string, [number, number][]>;
}

/**
 * Where each tracker keeps what it logs, and how to read a run back: the options that point it at a fresh store, and
 * a reader. A registered tracker must have an entry here (or in {@link STORELESS_TRACKERS}): its test fails otherwise.
 */
const STORES: Record<string, () => Promise<{ options: JsonObject; read(run: RunInfo): StoredRun }>> = {
  async 'mlflow-file'() {
    const root = tempDir();
    return {
      options: { root },
      read(run) {
        const stored = readStore(root).find((r) => r.runId === run.runId)!;
        const paramsDir = path.join(stored.dir!, 'params');
        const params = Object.fromEntries(fs.readdirSync(paramsDir).map((k) => [k, fs.readFileSync(path.join(paramsDir, k), 'utf8')]));
        return { status: stored.status, params, tags: stored.tags, metrics: stored.metrics };
      },
    };
  },
  async 'mlflow-rest'() {
    const server = await startFakeMlflow();
    servers.push(server);
    return {
      options: { uri: server.url, dir: tempDir(), flushIntervalMs: 20 },
      read(run) {
        const stored = server.runs.get(run.runId)!;
        const metrics: StoredRun['metrics'] = {};
        for (const m of stored.metrics) (metrics[m.key] ??= []).push([m.step, m.value]);
        return { status: stored.info.status, params: Object.fromEntries(stored.params), tags: Object.fromEntries(stored.tags), metrics };
      },
    };
  },
};

/** Trackers that keep nothing to read back, with the reason; their test checks that the reason still holds. */
const STORELESS_TRACKERS: Record<string, string> = {
  console: 'it prints epoch metrics to stdout and keeps no store',
};

/** Some data sets need files prepared first: the options that point them there. */
const DATASET_SETUP: Record<string, () => JsonObject> = {
  /** A WordPiece vocabulary trained on 40 messages (as the paper's run trains one on the training texts). */
  'spam-assassin'() {
    const texts = spamAssassinTexts('train', spamTextSchema.parse({ groups: ['easy-ham-1', 'spam-1'] })).texts;
    const file = path.join(tempDir(), 'wordpiece.json');
    fs.writeFileSync(file, JSON.stringify(WordPiece.train(texts.slice(0, 40), { vocabSize: 300 }).getState()));
    return { tokenizer: file, maxLen: 24 };
  },
};

describe('conformance', () => {
  eachPlugin(registry, 'tracker', (name) => {
    if (name in STORELESS_TRACKERS) {
      it(`keeps no store (exempt from reading back: ${STORELESS_TRACKERS[name]})`, async () => {
        const log = console.log;
        console.log = () => undefined;
        try {
          const info = await registry.create('tracker', name).startRun({ experiment: 'conformance', runName: 'exempt' });
          expect(info.location).toBe('stdout');
        } finally {
          console.log = log;
        }
      });
      return;
    }

    it('has a store to be read back from (STORES in this file)', () => expect(STORES[name], `tracker ${name}`).toBeTypeOf('function'));

    it('config round-trips', async () => expectSpecRoundTrip(registry, 'tracker', name, (await STORES[name]!()).options));

    const key = fc.stringMatching(/^[a-z][a-z0-9_]{0,10}$/);
    const text = fc.stringMatching(/^[!-~][ -~]{0,20}$/);
    // Finite values (no NaN or ±Inf: MLflow's JSON API has no representation of them) without −0, which MLflow stores as 0.
    const value = fc.double({ min: -1e6, max: 1e6, noNaN: true }).map((v) => v || 0);
    const runArb = fc.record({
      params: fc.dictionary(key, fc.oneof(text, fc.integer(), fc.boolean()), { maxKeys: 6 }),
      tags: fc.dictionary(
        key.map((k) => `t_${k}`),
        text,
        { maxKeys: 4 },
      ),
      metrics: fc.array(fc.tuple(fc.constantFrom('loss', 'val_loss', 'lr'), fc.nat({ max: 1000 }), value), { maxLength: 12 }),
      status: fc.constantFrom('FINISHED' as const, 'FAILED' as const),
    });

    it('logs a run that reads back from its store: params, every metric value at its step, tags, status', async () => {
      await fc.assert(
        fc.asyncProperty(runArb, async (logged) => {
          const store = await STORES[name]!();
          const tracker = registry.create('tracker', { type: name, ...store.options }) as Tracker;
          const run = await tracker.startRun({ experiment: 'conformance', runName: 'conformance-run', tags: logged.tags });
          tracker.logParams(logged.params);
          const steps = [...logged.metrics].sort((a, b) => a[1] - b[1]);
          for (const [k, step, v] of steps) tracker.logMetrics({ [k]: v }, step);
          await tracker.flush();
          await tracker.endRun(logged.status, logged.status === 'FAILED' ? 'conformance' : undefined);
          const stored = store.read(run);
          expect(stored.status).toBe(logged.status);
          expect(stored.params).toEqual(Object.fromEntries(Object.entries(logged.params).map(([k, v]) => [k, String(v)])));
          expect(stored.tags).toMatchObject(logged.tags);
          const want: StoredRun['metrics'] = {};
          for (const [k, step, v] of steps) (want[k] ??= []).push([step, v]);
          expect(stored.metrics).toEqual(want);
        }),
        { numRuns: 4 },
      );
    });
  });

  eachPlugin(registry, 'dataset', (name) => {
    let prepared: JsonObject | null = null; // set up once for this data set's tests
    const options = (): JsonObject => (prepared ??= { ...(registry.get('dataset', name).examples?.[0]?.options ?? {}), ...DATASET_SETUP[name]?.() });
    // Loading a split reads and encodes a whole corpus (seconds): both tests read the splits of one source.
    let source: DataSource | null = null;
    const first = () => (source ??= registry.create('dataset', { type: name, ...options() }));
    const loaded = new Map<string, Dataset>();
    const split = (s: string): Dataset => {
      if (!loaded.has(s)) loaded.set(s, first().load(s));
      return loaded.get(s)!;
    };
    /** Indices of a split: the first and last example and a few drawn from `picks`. */
    const indices = (size: number, picks: number[]) => [0, size - 1, ...picks.map((p) => p % size)];

    it('config round-trips', () => expectSpecRoundTrip(registry, 'dataset', name, options()));

    it('loads every split deterministically: two sources give the same examples', () => {
      const other = registry.create('dataset', { type: name, ...options() });
      expect(other.splits).toEqual(first().splits);
      for (const s of first().splits) {
        const [da, db] = [split(s), other.load(s)];
        expect([db.size, db.xShape, db.yShape]).toEqual([da.size, da.xShape, da.yShape]);
        fc.assert(
          fc.property(fc.array(fc.nat(), { maxLength: 6 }), (picks) => {
            const idx = indices(da.size, picks);
            const [ba, bb] = [da.batch(idx), db.batch(idx)];
            expect(Array.from(bb.x.dataSync())).toEqual(Array.from(ba.x.dataSync()));
            expect(Array.from(bb.y.dataSync())).toEqual(Array.from(ba.y.dataSync()));
            tf.dispose([ba.x, ba.y, bb.x, bb.y]);
          }),
          { numRuns: 5 },
        );
        if (da.lengths) expect(Array.from(db.lengths!())).toEqual(Array.from(da.lengths()));
      }
    });

    it('gives batches of the declared shapes with finite values, and one length per example that fits a row', () => {
      expect(first().splits.length).toBeGreaterThan(0);
      for (const s of first().splits) {
        const data = split(s);
        expect(data.size, `${name} ${s} has examples`).toBeGreaterThan(0);
        fc.assert(
          fc.property(fc.array(fc.nat(), { maxLength: 6 }), (picks) => {
            const idx = indices(data.size, picks);
            const { x, y } = data.batch(idx);
            expect(x.shape, `${name} ${s} inputs`).toEqual([idx.length, ...data.xShape]);
            expect(y.shape, `${name} ${s} targets`).toEqual([idx.length, ...data.yShape]);
            for (const t of [x, y]) expect(Array.from(t.dataSync()).every(Number.isFinite), `${name} ${s} values are finite`).toBe(true);
            tf.dispose([x, y]);
          }),
          { numRuns: 5 },
        );
        if (data.lengths) {
          const lengths = data.lengths();
          const row = data.xShape.reduce((a, b) => a * b, 1);
          expect(lengths.length, `${name} ${s}: one length per example`).toBe(data.size);
          expect(
            lengths.every((l) => l >= 0 && l <= row),
            `${name} ${s}: lengths within [0, ${row}]`,
          ).toBe(true);
        }
      }
    });
  });
});
