/**
 * The reproduction report (`loom report`, `npm run report`): reads the runs in a local MLflow file store and
 * writes `report.md` and `report.html` with, per paper, every run's measured numbers beside the published ones,
 * its scale, its environment (backend, CPU, versions, commit, seed, wall time) and learning curves drawn by
 * vega-lite as SVG.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vega from 'vega';
import { compile } from 'vega-lite';
import YAML from 'yaml';
import { formatMetric, type Paper } from '../core';

interface RunRecord {
  runId: string;
  runName: string;
  status: string;
  start: number;
  end: number | null;
  tags: Record<string, string>;
  /** Every logged value: key -> [step, value][] in logging order. */
  metrics: Record<string, [number, number][]>;
}

const STATUS: Record<number, string> = { 1: 'RUNNING', 2: 'SCHEDULED', 3: 'FINISHED', 4: 'FAILED', 5: 'KILLED' };

function readTree(dir: string, prefix = ''): [string, string][] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? readTree(path.join(dir, e.name), `${prefix}${e.name}/`) : [[`${prefix}${e.name}`, fs.readFileSync(path.join(dir, e.name), 'utf8')] as [string, string]],
  );
}

/** Every run of every experiment in an MLflow file store. */
export function readStore(root: string): RunRecord[] {
  if (!fs.existsSync(root)) return [];
  const runs: RunRecord[] = [];
  for (const exp of fs.readdirSync(root)) {
    const expDir = path.join(root, exp);
    if (!fs.existsSync(path.join(expDir, 'meta.yaml'))) continue;
    for (const run of fs.readdirSync(expDir)) {
      const metaFile = path.join(expDir, run, 'meta.yaml');
      if (!fs.existsSync(metaFile)) continue;
      const meta = YAML.parse(fs.readFileSync(metaFile, 'utf8')) as { run_id: string; run_name: string; status: number; start_time: number; end_time: number | null };
      const metrics: RunRecord['metrics'] = {};
      for (const [key, text] of readTree(path.join(expDir, run, 'metrics'))) {
        metrics[key] = text.trimEnd().split('\n').filter(Boolean).map((l) => {
          const [, v, s] = l.split(' ');
          return [Number(s), v === 'nan' ? NaN : Number(v)] as [number, number];
        });
      }
      runs.push({
        runId: meta.run_id, runName: meta.run_name, status: STATUS[meta.status] ?? String(meta.status), start: meta.start_time, end: meta.end_time,
        tags: Object.fromEntries(readTree(path.join(expDir, run, 'tags'))), metrics,
      });
    }
  }
  return runs.sort((a, b) => b.start - a.start);
}

const last = (r: RunRecord, key: string) => r.metrics[key]?.at(-1)?.[1];
const fmt = (v: number | undefined, metric: string) => (v === undefined ? 'n/a' : formatMetric(v, metric));

/** Learning curves as an SVG: every loss-like metric in one panel, every other per-epoch metric in another. */
async function curves(r: RunRecord): Promise<string | null> {
  const skip = new Set(['epoch', 'lr', 'wall_time_s', 'skipped_batches']);
  const values = Object.entries(r.metrics)
    .filter(([k, pts]) => !skip.has(k) && !k.startsWith('test_') && pts.length > 1)
    .flatMap(([k, pts]) => pts.map(([step, value]) => ({ metric: k, step, value, panel: /loss|perplexity/.test(k) ? 'loss' : 'other metrics' })));
  if (values.length === 0) return null;
  const spec = compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `${r.runName}: learning curves`,
    data: { values },
    facet: { row: { field: 'panel', type: 'nominal', title: null } },
    spec: {
      width: 520,
      height: 200,
      mark: { type: 'line', point: false },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'metric', type: 'nominal' },
      },
    },
    resolve: { scale: { y: 'independent' } },
  } as never).spec;
  return new vega.View(vega.parse(spec), { renderer: 'none' }).toSVG();
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface ReportOptions {
  /** The MLflow file store to read (default ./mlruns). */
  store: string;
  /** Where to write report.md, report.html and the SVGs. */
  out: string;
  papers: Record<string, Paper>;
}

/** Builds the report; returns the paths written. */
export async function buildReport(opts: ReportOptions): Promise<{ markdown: string; html: string; runs: number }> {
  const runs = readStore(opts.store).filter((r) => r.tags.paper);
  fs.mkdirSync(opts.out, { recursive: true });
  const md: string[] = ['# Reproduction report', '', `Generated ${new Date().toISOString()} from the MLflow store \`${opts.store}\` by \`loom report\`.`, ''];
  const html: string[] = ['<!doctype html><meta charset="utf-8"><title>loom reproduction report</title>', '<style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>', '<h1>Reproduction report</h1>', `<p>Generated ${new Date().toISOString()} from <code>${esc(opts.store)}</code>.</p>`];
  if (runs.length === 0) md.push('No paper runs in this store yet: run `npm run paper -- <name> --preset <preset>`.');
  const byPaper = new Map<string, RunRecord[]>();
  for (const r of runs) byPaper.set(r.tags.paper!, [...(byPaper.get(r.tags.paper!) ?? []), r]);
  for (const [name, group] of byPaper) {
    const paper = opts.papers[name];
    md.push(`## ${paper?.title ?? name}`, '');
    html.push(`<h2>${esc(paper?.title ?? name)}</h2>`);
    for (const r of group) {
      const t = r.tags;
      const wall = last(r, 'wall_time_s');
      const env = [
        ['status', r.status], ['preset', t.preset ?? '?'], ...(t.variant ? [['variant', t.variant]] : []), ['scale', t.scale ?? 'not recorded'], ['seed', t.seed ?? '?'],
        ['backend', `${t.backend ?? '?'} (${(t['backend.kernels'] ?? t['tfjs.backend'] ?? '').split(':')[0]})`], ['hardware', `${t['cpu.model'] ?? '?'} × ${t['cpu.count'] ?? '?'}${t['gpu.model'] ? `, GPU ${t['gpu.model']}` : ''}`],
        ['versions', `node ${t['node.version'] ?? '?'}, tfjs ${t['tfjs.version'] ?? '?'}`], ['commit', t['git.commit'] ?? '?'],
        ['wall time', wall === undefined ? 'n/a' : `${wall.toFixed(1)} s`], ['MLflow run', r.runId],
      ];
      const refs = (paper?.references ?? []).filter((ref) => !ref.variant || ref.variant === t.variant);
      const rows = refs.map((ref) => [ref.label, fmt(last(r, ref.metric), ref.metric), fmt(ref.value, ref.metric), ref.source]);
      const measuredOnly = Object.keys(r.metrics).filter((k) => k.startsWith('test_') && !refs.some((ref) => ref.metric === k));
      for (const k of measuredOnly) rows.push([k, fmt(last(r, k), k), '', '']);
      const svg = await curves(r);
      const svgFile = `${name}-${r.runId.slice(0, 8)}.svg`;
      if (svg) fs.writeFileSync(path.join(opts.out, svgFile), svg);
      md.push(`### ${r.runName}`, '', ...env.map(([k, v]) => `- ${k}: ${v}`), '', '| | measured | published / reference | source |', '| --- | --- | --- | --- |', ...rows.map((row) => `| ${row.join(' | ')} |`), '');
      if (svg) md.push(`![learning curves](${svgFile})`, '');
      html.push(`<h3>${esc(r.runName)}</h3><ul>${env.map(([k, v]) => `<li>${esc(k!)}: ${esc(v!)}</li>`).join('')}</ul>`);
      html.push(`<table><tr><th></th><th>measured</th><th>published / reference</th><th>source</th></tr>${rows.map((row) => `<tr>${row.map((c) => `<td>${esc(c!)}</td>`).join('')}</tr>`).join('')}</table>`);
      if (svg) html.push(svg);
    }
  }
  const markdown = path.join(opts.out, 'report.md');
  const page = path.join(opts.out, 'report.html');
  fs.writeFileSync(markdown, md.join('\n') + '\n');
  fs.writeFileSync(page, html.join('\n') + '\n');
  return { markdown, html: page, runs: runs.length };
}
