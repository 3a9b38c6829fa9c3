/** The reproduction report: measured numbers beside the references, scale and environment, curves as SVG. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { experimentPaper, type JsonObject, type PluginRegistry } from '../core';
import { testRegistry } from '../test/harness';
import toyBlobs, { toyConfig } from '../test/toy-data';
import { buildReport } from './report';

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
    for (const s of ['scale: SMALLER THAN THE PAPER: 72 examples', 'seed: 7', `backend: ${result.backend}`, `commit: ${result.commit}`, 'status: FINISHED', 'wall time: ']) expect(md).toContain(s);
    const svg = md.match(/!\[learning curves\]\((.+\.svg)\)/)![1]!;
    const chart = fs.readFileSync(path.join(dir, 'report', svg), 'utf8');
    expect(chart).toMatch(/^<svg/);
    for (const k of ['val_loss', 'batch_loss', 'accuracy']) expect(chart).toContain(k);
    const html = fs.readFileSync(r.html, 'utf8');
    expect(html).toContain(`<td>published accuracy</td><td>${measured}</td>`);
    expect(html).toContain('<svg');
  });
});
