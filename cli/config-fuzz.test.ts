/**
 * Fuzzing the config boundary (issue 18, "configs"): random `--set` overrides of the mnist-cnn smoke preset —
 * wrong types, unknown keys, list indices out of range, out-of-range values, unknown plugin names, junk nested
 * inside scalars, and valid values among them — given to `loom paper mnist-cnn`. Each is either accepted and trains (exit 0, one FINISHED run
 * with its metrics), or rejected with exit code 2 and one `loom: ...` line naming the field, never a stack trace
 * and never a run left in ./mlruns. 60 cases run in process through the CLI's `run` (a run takes ~0.5 s there);
 * a sample of 4 rejected ones also goes through the real executable in a subprocess, which must say the same.
 *
 * Accepted cases stay small: the preset is cut to 40 training and 20 test images (the overrides may change that,
 * to at most 4 or to the smoke preset's 2,000), and numbers are drawn from [-3, 4] so that a valid epoch count,
 * batch size or layer width stays cheap. Fields naming places on disk (`trainer.checkpoint.dir`, the trackers'
 * `root`) are left out: their valid values write elsewhere.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRegistry, flattenConfig, mergeConfig, PLUGIN_KINDS, type JsonObject } from '../core';
import { papers } from '../papers';
import { registerBuiltins } from '../plugins';
import { run } from './loom';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CAP = { data: { trainLimit: 40, testLimit: 20 } };
const CAP_ARGS = ['--set', 'data.trainLimit=40', '--set', 'data.testLimit=20'];
const base = mergeConfig(papers['mnist-cnn']!.presets.smoke!, CAP as unknown as JsonObject);

const registry = registerBuiltins(createRegistry());
const registered = new Set(PLUGIN_KINDS.flatMap((k) => registry.names(k)));
const onDisk = (p: string) => p.startsWith('trackers') || p.startsWith('trainer.checkpoint.dir');
const leaves = Object.keys(flattenConfig(base)).filter((p) => !onDisk(p));
const optional = [
  'data.validation',
  'trainer.clipNorm',
  'trainer.clipValue',
  'trainer.accumulateSteps',
  'trainer.onNonFinite',
  'trainer.evalBatchSize',
  'trainer.checkpoint.keep',
  'trainer.checkpoint.everySteps',
  'trainer.checkpoint.enabled',
  'schedule',
  'augmentations',
  'parallelism',
];
const containers = ['', 'data', 'model', 'model.layers.0', 'model.layers.3', 'optimizer', 'trainer', 'trainer.checkpoint'];
const lists: [string, number][] = [
  ['model.layers', 5],
  ['model.inputShape', 3],
  ['metrics', 1],
  ['callbacks', 1],
  ['augmentations', 0],
];
const pluginFields = [
  'optimizer.type',
  'loss',
  'model.layers.0.type',
  'model.layers.3.activation',
  'model.layers.0.kernelInitializer',
  'metrics.0',
  'callbacks.0',
  'data.source',
  'schedule',
  'parallelism',
];

const field = fc.oneof(
  fc.constantFrom(...leaves, ...optional),
  fc.tuple(fc.constantFrom(...containers), fc.constantFrom('bogus', 'epoch', 'lr2', 'Type', 'units_')).map(([c, k]) => (c ? `${c}.${k}` : k)),
  fc
    .tuple(fc.constantFrom(...lists), fc.integer({ min: 0, max: 5 }), fc.constantFrom('', '.units', '.type'))
    .map(([[l, n], extra, tail]) => `${l}.${n + extra}${tail}`),
  fc.tuple(fc.constantFrom(...leaves), fc.constantFrom('x', '0.y', 'type')).map(([l, tail]) => `${l}.${tail}`),
);
const junk = fc.oneof(
  fc.constantFrom<unknown>(null, true, false, '', 'abc', 'NaN', -1, 0, 1, 2, 0.5, -0.5, 1.5, [], {}, [1, 2], { a: 1 }, { type: 'nope' }),
  fc.integer({ min: -3, max: 4 }),
  fc.double({ min: -2, max: 2, noNaN: true }),
  fc.string({ maxLength: 5 }),
  fc.array(fc.constantFrom<unknown>(1, 'x', null), { maxLength: 3 }),
  fc.dictionary(fc.string({ minLength: 1, maxLength: 3 }), fc.constantFrom<unknown>(1, 'x', null), { maxKeys: 2 }),
);
/** A leaf set to its preset value, or to 1-3 for a number, or flipped for a switch: mostly valid, so runs happen. */
const nearValid = fc.constantFrom(...leaves).chain((l) => {
  const v = l.split('.').reduce<unknown>((n, k) => (n as Record<string, unknown>)[k], base);
  const value = typeof v === 'number' ? fc.constantFrom<unknown>(v, 1, 2, 3) : typeof v === 'boolean' ? fc.boolean() : fc.constant<unknown>(v);
  return value.map((x) => [l, x] as [string, unknown]);
});
const unknownName = fc.stringMatching(/^[a-z][a-z0-9-]{0,9}$/).filter((n) => !registered.has(n));
const override = fc.oneof(
  { arbitrary: fc.tuple(field, junk), weight: 3 },
  { arbitrary: nearValid, weight: 3 },
  { arbitrary: fc.tuple(fc.constantFrom(...pluginFields), unknownName), weight: 1 },
);
const overrides = fc.array(override, { minLength: 1, maxLength: 3 }).map((os_) => os_.map(([f, v]) => `${f}=${JSON.stringify(v)}`));
const argvOf = (sets: string[]) => ['paper', 'mnist-cnn', '--preset', 'smoke', ...CAP_ARGS, ...sets.flatMap((s) => ['--set', s])];

/**
 * Where an override's error is: its path up to the first key the preset lacks, or up to a scalar it reaches
 * inside (`trainer.epochs.x` is an error of `trainer.epochs`).
 */
function errorPoint(setFlag: string): string[] {
  const segs = setFlag.slice(0, setFlag.indexOf('=')).split('.');
  let node: unknown = base;
  for (let i = 0; i < segs.length; i++) {
    if (node === null || typeof node !== 'object') return segs.slice(0, i);
    if (!(segs[i]! in (node as object))) return segs.slice(0, i + 1);
    node = (node as Record<string, unknown>)[segs[i]!];
  }
  return segs;
}

/**
 * Whether `message` names the field at `point`: its dotted path (list indices may be written `[i]`), or its parent
 * and its own key as a word, or the list element it lies in (`model.layers.1` for a pool too large for its input).
 */
function namesField(message: string, point: string[]): boolean {
  const m = message.replace(/\[(\d+)\]/g, '.$1');
  const word = (w: string) => new RegExp(`(^|[^\\w-])${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^\\w-]|$)`).test(m);
  if (point.length === 1) return word(point[0]!);
  if (m.includes(point.join('.'))) return true;
  if (m.includes(point.slice(0, -1).join('.')) && word(point.at(-1)!)) return true;
  return point.some((s, k) => k > 0 && /^\d+$/.test(s) && m.includes(point.slice(0, k + 1).join('.')));
}

/** The run folders under ./mlruns (experiment folders hold meta.yaml and one folder per run). */
function runs(): string[] {
  if (!fs.existsSync('mlruns')) return [];
  return fs.readdirSync('mlruns').flatMap((e) => {
    const dir = path.join('mlruns', e);
    return fs.statSync(dir).isDirectory()
      ? fs
          .readdirSync(dir)
          .filter((r) => fs.statSync(path.join(dir, r)).isDirectory())
          .map((r) => path.join(dir, r))
      : [];
  });
}

const STACK = /\n\s+at .+:\d+:\d+/;

describe('config fuzzing (60 cases in process, 4 through the executable)', () => {
  beforeAll(() => {
    // Runs print their backend and progress; keep the test output to failures.
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
  });
  afterAll(() => {
    vi.restoreAllMocks();
  });

  it('every random --set is accepted and trains, or rejected with exit code 2 naming the field, no stack and no run left', { timeout: 600_000 }, async () => {
    const seen = { accepted: 0, rejected: 0 };
    await fc.assert(
      fc.asyncProperty(overrides, async (sets) => {
        const argv = argvOf(sets);
        const before = new Set(runs());
        const err: string[] = [];
        const code = await run(argv, { out: () => undefined, err: (t) => err.push(t) });
        const made = runs().filter((r) => !before.has(r));
        const stderr = err.join('\n');
        const what = `loom ${argv.join(' ')}\n${stderr}`;
        expect(stderr, what).not.toMatch(STACK);
        expect([0, 2], what).toContain(code);
        if (code === 0) {
          seen.accepted++;
          expect(made, what).toHaveLength(1);
          expect(fs.readFileSync(path.join(made[0]!, 'meta.yaml'), 'utf8'), what).toMatch(/^status: 3$/m);
          expect(fs.readdirSync(path.join(made[0]!, 'metrics')), what).toContain('test_accuracy');
        } else {
          seen.rejected++;
          expect(made, what).toEqual([]);
          expect(stderr, what).toMatch(/^loom: /);
          expect(
            sets.some((s) => namesField(stderr, errorPoint(s))),
            `the message names none of ${sets.join(', ')}: ${what}`,
          ).toBe(true);
        }
      }),
      { numRuns: 60, seed: Number(process.env.LOOM_FUZZ_SEED ?? 1818) },
    );
    // The generator must exercise both outcomes, or the property says little.
    expect(seen.accepted).toBeGreaterThan(5);
    expect(seen.rejected).toBeGreaterThan(20);
  });

  it('a sample of rejected overrides gets the same message and exit code 2 from the executable, and leaves no run', { timeout: 300_000 }, async () => {
    const rejected: { argv: string[]; message: string }[] = [];
    for (const sets of fc.sample(overrides, { numRuns: 40, seed: 7 })) {
      if (rejected.length === 4) break;
      const err: string[] = [];
      const code = await run(argvOf(sets), { out: () => undefined, err: (t) => err.push(t) });
      if (code === 2) rejected.push({ argv: argvOf(sets), message: err.join('\n') });
    }
    expect(rejected).toHaveLength(4);
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-fuzz-'));
    try {
      for (const { argv, message } of rejected) {
        const r = spawnSync(process.execPath, [path.join(repo, 'cli/bin.mjs'), ...argv], { encoding: 'utf8', cwd });
        expect(r.status, argv.join(' ')).toBe(2);
        expect(r.stderr.trim()).toBe(message.trim());
        expect(r.stderr).not.toMatch(STACK);
      }
      expect(fs.existsSync(path.join(cwd, 'mlruns')) ? fs.readdirSync(path.join(cwd, 'mlruns')).filter((e) => e !== '0') : []).toEqual([]);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('the field oracle itself: names a path, a parent with its key, or the list element', () => {
    expect(namesField('loom: invalid experiment config: trainer.epochs: expected int', ['trainer', 'epochs'])).toBe(true);
    expect(namesField('loom: model.layers[0]: layer "conv2d" option "filters": expected number', ['model', 'layers', '0', 'filters'])).toBe(true);
    expect(namesField('loom: model.layers[1]: layer "max-pool2d_2": expected input shape', ['model', 'layers', '1', 'poolSize'])).toBe(true);
    expect(namesField('loom: invalid experiment config: Unrecognized key: "foo"', ['foo'])).toBe(true);
    expect(namesField('loom: invalid experiment config: trainer.epochs: expected int', ['trainer', 'x'])).toBe(false);
    expect(namesField('loom: something failed', ['optimizer', 'lr'])).toBe(false);
  });
});
