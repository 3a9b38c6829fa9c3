/** The MLflow REST client and the log-batch splitter, against a local server that behaves like MLflow 2.12. */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startFakeMlflow, type FakeMlflow } from '../../test/mlflow-fake-server';
import {
  batchBytes,
  BatchPacker,
  canMerge,
  LOG_BATCH_LIMITS,
  MlflowRequestError,
  MlflowRestClient,
  splitBatch,
  type BatchLimits,
  type MlflowBatch,
} from './mlflow-rest-client';

let server: FakeMlflow;
beforeEach(async () => {
  server = await startFakeMlflow();
});
afterEach(() => server.close());

const kv = (prefix: string, maxValue: number) => fc.record({ key: fc.nat(10_000).map((i) => `${prefix}${i}`), value: fc.string({ maxLength: maxValue }) });
const metric = fc.record({
  key: fc.constantFrom('loss', 'acc', 'lr', 'a/b'),
  value: fc.double({ noNaN: true, noDefaultInfinity: true }),
  timestamp: fc.nat(),
  step: fc.nat(),
});
const batchArb = (maxMetrics: number, maxParams: number, maxValue: number): fc.Arbitrary<MlflowBatch> =>
  fc.record({
    metrics: fc.array(metric, { maxLength: maxMetrics }),
    params: fc.uniqueArray(kv('p', maxValue), { maxLength: maxParams, selector: (p) => p.key }),
    tags: fc.uniqueArray(kv('t', maxValue), { maxLength: maxParams, selector: (t) => t.key }),
  });

function withinLimits(b: MlflowBatch, l: BatchLimits): boolean {
  const body = JSON.stringify({ run_id: 'f'.repeat(32), metrics: b.metrics, params: b.params, tags: b.tags });
  return (
    b.metrics.length <= l.metrics &&
    b.params.length <= l.params &&
    b.tags.length <= l.tags &&
    b.metrics.length + b.params.length + b.tags.length <= l.entities &&
    Buffer.byteLength(body) <= l.bytes
  );
}

describe('log-batch splitting', () => {
  it('splits any batch into requests within every limit, losing, reordering and repeating nothing', () => {
    // Small limits so that every limit (count per kind, total, bytes) binds in some generated cases.
    const limits: BatchLimits = { metrics: 7, params: 3, tags: 4, entities: 9, bytes: 2_000 };
    fc.assert(
      fc.property(batchArb(40, 12, 300), (b) => {
        const pieces = splitBatch(b, limits);
        for (const p of pieces) expect(withinLimits(p, limits)).toBe(true);
        for (const kind of ['metrics', 'params', 'tags'] as const) expect(pieces.flatMap((p) => p[kind] as unknown[])).toEqual(b[kind]);
        // Greedy: a piece is closed only when the next entity would not fit in it.
        for (let i = 0; i + 1 < pieces.length; i++) {
          const next = pieces[i + 1]!;
          const first = next.params[0]
            ? { ...pieces[i]!, params: [...pieces[i]!.params, next.params[0]] }
            : next.tags[0]
              ? { ...pieces[i]!, tags: [...pieces[i]!.tags, next.tags[0]] }
              : { ...pieces[i]!, metrics: [...pieces[i]!.metrics, next.metrics[0]!] };
          expect(withinLimits(first, limits) && batchBytes(first) <= limits.bytes).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('merges two batches only when the result stays within the limits and repeats no param or tag key', () => {
    const limits: BatchLimits = { metrics: 7, params: 3, tags: 4, entities: 9, bytes: 2_000 };
    fc.assert(
      fc.property(batchArb(8, 4, 200), batchArb(8, 4, 200), (a, b) => {
        const [pa, pb] = [splitBatch(a, limits)[0]!, splitBatch(b, limits)[0]!];
        const merged = { metrics: [...pa.metrics, ...pb.metrics], params: [...pa.params, ...pb.params], tags: [...pa.tags, ...pb.tags] };
        const repeats = pb.params.some((p) => pa.params.some((q) => q.key === p.key)) || pb.tags.some((t) => pa.tags.some((q) => q.key === t.key));
        if (canMerge(pa, pb, limits)) expect(withinLimits(merged, limits) && !repeats).toBe(true);
        else expect(!withinLimits(merged, limits) || repeats || batchBytes(pa) + batchBytes(pb) - 128 > limits.bytes).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('packs a queue of batches exactly as repeated canMerge would', () => {
    const limits: BatchLimits = { metrics: 7, params: 3, tags: 4, entities: 9, bytes: 2_000 };
    fc.assert(
      fc.property(fc.array(batchArb(4, 2, 150), { maxLength: 12 }), (bs) => {
        const pieces = bs.map((b) => splitBatch(b, limits)[0]!);
        const packer = new BatchPacker(limits);
        const acc: MlflowBatch = { metrics: [], params: [], tags: [] };
        for (const b of pieces) {
          const expected = canMerge(acc, b, limits);
          expect(packer.add(b)).toBe(expected);
          if (!expected) break;
          acc.metrics.push(...b.metrics);
          acc.params.push(...b.params);
          acc.tags.push(...b.tags);
        }
        expect(packer.batch).toEqual(acc);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps MLflow's real limits: the server refuses the whole batch and accepts every piece", async () => {
    const client = new MlflowRestClient(server.url);
    const exp = await client.getOrCreateExperiment('limits');
    const run = await client.createRun({ experimentId: exp, runName: 'r', startTime: 1, userId: 'u', tags: [] });
    const big: MlflowBatch = {
      metrics: Array.from({ length: 2500 }, (_, i) => ({ key: `m${i % 7}`, value: i / 3, timestamp: 1_700_000_000_000 + i, step: i })),
      params: Array.from({ length: 250 }, (_, i) => ({ key: `p${i}`, value: String(i) })),
      // 150 tags of 7,000 bytes: over 1 MB in tags alone, so the byte limit binds as well as the counts.
      tags: Array.from({ length: 150 }, (_, i) => ({ key: `t${i}`, value: 'x'.repeat(7000) })),
    };
    await expect(client.logBatch(run.runId, big)).rejects.toMatchObject({ status: 400, errorCode: 'INVALID_PARAMETER_VALUE', outage: false });
    const pieces = splitBatch(big);
    expect(pieces.length).toBeGreaterThanOrEqual(Math.ceil(2900 / LOG_BATCH_LIMITS.entities));
    for (const p of pieces) await client.logBatch(run.runId, p);
    const stored = server.runs.get(run.runId)!;
    expect(stored.metrics.map((m) => m.step)).toEqual(big.metrics.map((m) => m.step));
    expect(stored.params.size).toBe(250);
    expect(stored.tags.get('t149')).toBe('x'.repeat(7000));
  });
});

describe('MLflow REST client', () => {
  it('sends JSON with its Content-Type (the server answers 400 without it)', async () => {
    const raw = await fetch(`${server.url}/api/2.0/mlflow/experiments/create`, {
      method: 'POST',
      body: JSON.stringify({ name: 'x' }),
      headers: { 'content-type': 'text/plain' },
    });
    expect(raw.status).toBe(400);
    const client = new MlflowRestClient(server.url);
    expect(await client.getExperimentByName('x')).toBeNull();
    const id = await client.getOrCreateExperiment('x');
    expect(server.experiments.get(id)!.name).toBe('x');
  });

  it('keeps experiment ids beyond 2^53 exact, and resolves a create race to one experiment', async () => {
    const clients = Array.from({ length: 5 }, () => new MlflowRestClient(server.url));
    const ids = await Promise.all(clients.map((c) => c.getOrCreateExperiment('race')));
    expect(new Set(ids).size).toBe(1);
    expect(BigInt(ids[0]!)).toBeGreaterThan(2n ** 53n);
    expect([...server.experiments.values()].filter((e) => e.name === 'race')).toHaveLength(1);
    expect(server.log.some((r) => r.path.endsWith('experiments/create') && r.status === 400)).toBe(true);
  });

  it('classifies failures: rejections, outages, and requests that may have been applied', async () => {
    const client = new MlflowRestClient(server.url, { timeoutMs: 300 });
    const exp = await client.getOrCreateExperiment('e');
    const run = await client.createRun({ experimentId: exp, runName: 'r', startTime: 1, userId: 'u', tags: [] });
    expect(run.artifactPath).toBe(`${exp}/${run.runId}/artifacts`);
    await client.logBatch(run.runId, { metrics: [], params: [{ key: 'lr', value: '0.1' }], tags: [] });
    await client.logBatch(run.runId, { metrics: [], params: [{ key: 'lr', value: '0.1' }], tags: [] });
    const conflict = await client.logBatch(run.runId, { metrics: [], params: [{ key: 'lr', value: '0.2' }], tags: [] }).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(MlflowRequestError);
    expect(conflict).toMatchObject({ status: 400, errorCode: 'INVALID_PARAMETER_VALUE', outage: false });
    expect(String(conflict)).toMatch(/lr.*0\.1.*0\.2/);

    const m = { metrics: [{ key: 'loss', value: 1, timestamp: 5, step: 0 }], params: [], tags: [] };
    for (const [fault, applied] of [
      [503, false],
      [500, true],
      ['drop-after-apply', true],
      ['hang', true],
    ] as const) {
      server.fault = () => fault;
      const e = await client.logBatch(run.runId, m).catch((err: unknown) => err);
      expect(e, String(fault)).toMatchObject({ outage: true, mayHaveApplied: applied });
    }
    server.fault = null;
    // Only 'drop-after-apply' applied it; 'hang' and the HTTP errors did not.
    expect(server.runs.get(run.runId)!.metrics).toHaveLength(1);

    await server.close();
    // The first request may meet a kept-alive socket the server cut (ambiguous); a fresh connection is refused.
    expect(await client.logBatch(run.runId, m).catch((e: unknown) => e)).toMatchObject({ outage: true });
    const refused = await client.logBatch(run.runId, m).catch((e: unknown) => e);
    expect(refused).toMatchObject({ outage: true, mayHaveApplied: false });
    expect(String(refused)).toMatch(/ECONNREFUSED/);
    await server.restart();
    await client.logBatch(run.runId, m);
    expect(server.runs.get(run.runId)!.metrics).toHaveLength(2);
  });

  it('round-trips non-finite metric values and uploads artifact bytes', async () => {
    const client = new MlflowRestClient(server.url);
    const exp = await client.getOrCreateExperiment('e');
    const run = await client.createRun({ experimentId: exp, runName: 'r', startTime: 1, userId: 'u', tags: [] });
    const values = [NaN, Infinity, -Infinity, 0.5];
    await client.logBatch(run.runId, {
      metrics: values.map((v, step) => ({
        key: 'x',
        value: Number.isFinite(v) ? v : String(v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : 'NaN'),
        timestamp: 1,
        step,
      })),
      params: [],
      tags: [],
    });
    const hist = await client.getMetricHistory(run.runId, 'x');
    expect(hist.map((h) => (typeof h.value === 'string' ? h.value : h.value))).toEqual(['NaN', 'Infinity', '-Infinity', 0.5]);
    const bytes = new Uint8Array([0, 255, 1, 2, 3]);
    await client.uploadArtifact(run, 'model/weights bin', bytes);
    expect([...server.artifacts.get(`${exp}/${run.runId}/artifacts/model/weights bin`)!]).toEqual([...bytes]);
  });

  it('names a malformed tracking URI', () => {
    expect(() => new MlflowRestClient('localhost:5000')).toThrow(/tracking URI: expected http/);
    expect(() => new MlflowRestClient('not a url')).toThrow(/tracking URI: expected an http\(s\) URL/);
  });
});
