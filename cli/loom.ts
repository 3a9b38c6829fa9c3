/**
 * The `loom` command line: `paper <name>` runs a reproduction, `plugins` lists the registry, `papers` lists papers,
 * `sync` uploads runs spooled while the MLflow server was unreachable.
 * It wires the built-in plugins and papers into a fresh registry; core/ knows nothing of either.
 */
import 'reflect-metadata';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, createRegistry, findLatestCheckpoint, formatComparison, LoomError, PLUGIN_KINDS, type PaperResult, type PluginKind } from '../core';
import { papers } from '../papers';
import { registerBuiltins } from '../plugins';
import { syncStore } from '../plugins/trackers/mlflow-rest';
import { pluginDocs } from './plugin-docs';
import { buildReport } from './report';

const USAGE = `usage:
  loom paper <name> [--preset P] [--seed N] [--backend B] [--parallelism S] [--json FILE] [--tracking-uri URL] [--resume latest|DIR]
                    [--set FIELD=VALUE ...]
  loom paper transformer --predict WORD [--preset P]
  loom paper gpt --predict PROMPT [--preset P] [--temperature T] [--top-k K] [--length N]
  loom papers
  loom plugins [--json] [--kind K] [--markdown FILE]
  loom report [--store mlruns] [--out reports]
  loom sync [--tracking-uri URL] [--dir mlruns]

  <name>              one of: ${Object.keys(papers).join(', ')}
  --backend B         force a backend (also LOOM_BACKEND); default: the fastest available
  --parallelism S     the parallelism strategy, e.g. mpi-data-parallel under mpirun (docs/parallelism.md)
  --tracking-uri URL  an MLflow tracking server (also MLFLOW_TRACKING_URI when http(s)); default: ./mlruns
  --resume            continue an interrupted run (same MLflow run) from its newest checkpoint under ./checkpoints
                      ("latest"), or from a checkpoint directory; give the same preset, seed and --set values
  --set FIELD=VALUE   override one field of the preset's config, by its dotted path (repeatable); VALUE is read
                      as JSON when it parses, else as a string: --set trainer.epochs=1 --set optimizer.lr=3e-4
  sync                uploads the runs spooled under --dir while the server was unreachable`;

/**
 * `--tracking-uri`, else MLFLOW_TRACKING_URI when it is http(s) (MLflow also allows paths there: those keep ./mlruns).
 * A malformed URI is reported and the run falls back to the local store, rather than dying (`sync` needs a valid one).
 */
function trackingUri(flag: string | undefined, strict = false): string | undefined {
  const check = (name: string, uri: string) => {
    if (/^https?:\/\/[^\s/]+/i.test(uri) && URL.canParse(uri)) return uri;
    const message = `expected an http(s) URL such as http://localhost:5000, got "${uri}"`;
    if (strict) throw new ConfigError(name, message);
    console.error(`loom: ${name}: ${message}; logging to the local store ./mlruns instead`);
    return undefined;
  };
  if (flag !== undefined) return check('--tracking-uri', flag);
  const env = process.env.MLFLOW_TRACKING_URI;
  return env && /^https?:/i.test(env) ? check('MLFLOW_TRACKING_URI', env) : undefined;
}

/**
 * `--set a.b.c=VALUE` flags as one nested object to deep-merge over the preset (Hydra-style overrides). VALUE is
 * JSON when it parses (numbers, booleans, null, arrays, objects), else a plain string.
 */
function parseOverrides(flags: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const keys = eq > 0 ? flag.slice(0, eq).split('.') : [];
    if (eq <= 0 || keys.some((k) => !/^[A-Za-z0-9_-]+$/.test(k))) {
      throw new ConfigError('--set', `expected FIELD=VALUE with a dotted field path such as trainer.epochs=1, got "${flag}"`);
    }
    const text = flag.slice(eq + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // not JSON: a string such as an optimizer's name
    }
    let node = out;
    for (const k of keys.slice(0, -1)) {
      const next = node[k];
      if (next !== undefined && (typeof next !== 'object' || next === null || Array.isArray(next))) throw new ConfigError('--set', `"${flag}" sets inside ${k}, which another --set gave a value`);
      node = (node[k] ??= {}) as Record<string, unknown>;
    }
    node[keys.at(-1)!] = value;
  }
  return out;
}

function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new ConfigError(`--${name}`, `expected a non-negative integer, got "${v}"`);
  return Number(v);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const registry = registerBuiltins(createRegistry());
  switch (command) {
    case 'paper': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { preset: { type: 'string' }, seed: { type: 'string' }, backend: { type: 'string' }, parallelism: { type: 'string' }, json: { type: 'string' }, resume: { type: 'string' }, 'tracking-uri': { type: 'string' }, predict: { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' }, length: { type: 'string' }, set: { type: 'string', multiple: true } },
      });
      const overrides = parseOverrides(values.set ?? []);
      if (values.parallelism) overrides.parallelism = values.parallelism;
      const name = positionals[0];
      if (!name) throw new ConfigError('paper', `name a paper: ${Object.keys(papers).join(', ')}`);
      const paper = papers[name];
      if (!paper) throw new ConfigError('paper', `unknown paper "${name}"; papers: ${Object.keys(papers).join(', ')}`);
      const preset = values.preset ?? 'smoke';
      if (!paper.presets[preset]) throw new ConfigError('--preset', `paper "${name}" has no preset "${preset}"; presets: ${Object.keys(paper.presets).join(', ')}`);
      if (values.predict !== undefined) {
        if (!paper.predict) throw new ConfigError('--predict', `paper "${name}" has no prediction mode`);
        const options = Object.fromEntries((['temperature', 'top-k', 'length'] as const).filter((k) => values[k] !== undefined).map((k) => [k, values[k]!]));
        console.log(await paper.predict(registry, preset, values.predict, options));
        return 0;
      }
      let resume = values.resume;
      if (resume === 'latest') {
        const experiment = String(paper.presets[preset]!.experiment ?? name);
        resume = findLatestCheckpoint(experiment) ?? undefined;
        if (!resume) throw new ConfigError('--resume', `no checkpoint of experiment "${experiment}" under ./checkpoints to resume`);
      }
      const uri = trackingUri(values['tracking-uri']);
      const result = await paper.run({ registry, preset, seed: intFlag('seed', values.seed), backend: values.backend ?? process.env.LOOM_BACKEND, trackingUri: uri, resume, overrides });
      console.log(`\n${formatComparison(result)}`);
      if (values.json) fs.writeFileSync(values.json, JSON.stringify(summary(result), null, 2) + '\n');
      return 0;
    }
    case 'papers':
      for (const p of Object.values(papers)) {
        console.log(`${p.name}: ${p.title}`);
        for (const [preset, note] of Object.entries(p.presetNotes)) console.log(`  --preset ${preset}: ${note}`);
      }
      return 0;
    case 'plugins': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean' }, kind: { type: 'string' }, markdown: { type: 'string' } } });
      if (values.markdown) {
        fs.mkdirSync(path.dirname(values.markdown), { recursive: true });
        fs.writeFileSync(values.markdown, pluginDocs(registry));
        console.log(`loom: wrote ${values.markdown}`);
        return 0;
      }
      const kind = values.kind as PluginKind | undefined;
      if (kind && !PLUGIN_KINDS.includes(kind)) throw new ConfigError('--kind', `unknown kind "${kind}"; kinds: ${PLUGIN_KINDS.join(', ')}`);
      const list = registry.list(kind);
      if (values.json) console.log(JSON.stringify(list, null, 2));
      else for (const p of list) console.log(`${p.kind.padEnd(12)} ${p.name.padEnd(34)} ${p.description}`);
      return 0;
    }
    case 'report': {
      const { values } = parseArgs({ args: rest, options: { store: { type: 'string' }, out: { type: 'string' } } });
      const store = path.resolve(values.store ?? 'mlruns');
      if (!fs.existsSync(store)) throw new ConfigError('--store', `no MLflow store at ${store}`);
      const r = await buildReport({ store, out: path.resolve(values.out ?? 'reports'), papers });
      console.log(`loom: report of ${r.runs} paper run(s): ${r.markdown} and ${r.html}`);
      return 0;
    }
    case 'sync': {
      const { values } = parseArgs({ args: rest, options: { 'tracking-uri': { type: 'string' }, dir: { type: 'string' } } });
      const results = await syncStore({ dir: values.dir ?? 'mlruns', trackingUri: trackingUri(values['tracking-uri'], true) });
      const count = (o: string) => results.filter((r) => r.outcome === o).length;
      console.log(`loom sync: ${count('synced')} uploaded, ${count('pending')} still pending, ${count('skipped')} skipped, ${count('up-to-date')} already up to date`);
      return count('pending') > 0 ? 1 : 0;
    }
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return 0;
    default:
      throw new ConfigError('command', `unknown command "${command}"\n${USAGE}`);
  }
}

/** The machine-readable summary written by `--json`. */
export function summary(r: PaperResult) {
  return {
    paper: r.paper,
    preset: r.preset,
    backend: r.backend,
    seed: r.seed,
    metrics: r.metrics,
    wallTimeSec: r.wallTimeSec,
    mlflowRunId: r.mlflow.runId,
    mlflowExperimentId: r.mlflow.experimentId,
    mlflowRunDir: r.mlflow.location,
    commit: r.commit,
    scale: r.scale,
    comparison: r.comparison,
  };
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof LoomError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      console.error(`loom: ${err.message}`);
      process.exit(2);
    }
    console.error(err);
    process.exit(1);
  },
);
