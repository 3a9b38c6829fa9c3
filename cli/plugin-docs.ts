/**
 * Generates docs/plugins.md from the registry: every plugin's kind, name, aliases, description (with its source)
 * and the properties its tests check, plus what the conformance suite checks for every plugin of a kind.
 * Run `npm run docs`; a test fails when the committed file differs from what this produces.
 */
import { PLUGIN_KINDS, type PluginKind, type PluginRegistry } from '../core';

/**
 * What the conformance suites (test/conformance*.test.ts, generated from the registry: one test per plugin per property) and
 * the suites that loop over the registry check for every plugin of a kind.
 */
export const CONFORMANCE: Partial<Record<PluginKind, string>> = {
  layer:
    'gradients (inputs and weights) match central finite differences; saving and loading gives the same outputs; the config round-trips; ' +
    'no tensor leak; on every CPU backend',
  model:
    'parameters named <model>/<part>/<weight>, uniquely and for any seed; initial weights from the seed alone; gradients match central ' +
    'finite differences; no tensor leak; the config round-trips; saved and loaded, the same weights and outputs; resumed from a checkpoint, ' +
    'the weights of the uninterrupted run (test/models.test.ts)',
  activation: 'gradients match central finite differences; the config round-trips; no tensor leak; on every CPU backend',
  loss: 'gradients with respect to predictions match central finite differences; the config round-trips; no tensor leak; on every CPU backend',
  optimizer:
    'minimises a quadratic; the state dict round-trips and continues identically (names and shapes checked); no tensor leak; ' +
    "on every CPU backend; its paper's update rule in float64 (update-rules/adam tests)",
  initializer: 'fills the requested shape with finite values, deterministically under a seed; the config round-trips',
  regularizer: 'the penalty gradient matches central finite differences; the config round-trips; no tensor leak',
  metric:
    'accumulated over any split of a batch it equals the metric of the whole batch; reset forgets; a mid-stream state continues identically; ' +
    'on every CPU backend (test/conformance-training.test.ts)',
  schedule:
    'finite and positive at every step of a run; depends only on step, epoch and run length (a resumed run gets the same rates); ' +
    'the config round-trips (test/conformance-training.test.ts)',
  callback:
    'given the state taken after any epoch (through JSON), a fresh callback continues identically (stop, learning rate, state, final weights); ' +
    'stateless ones are listed as exempt (test/conformance-training.test.ts)',
  tracker:
    'params, every metric value at its step, tags and the final status read back from its store (the file store, or a fake MLflow server); ' +
    'storeless ones are listed as exempt (test/conformance-io.test.ts)',
  dataset:
    'every split loads the same examples twice; batches have the declared shapes and finite values; lengths fit the rows; ' +
    'the config round-trips (test/conformance-io.test.ts)',
  augmentation: 'keeps shape and dtype; deterministic under a seed; no tensor leak; rejects non-image inputs by name',
};

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function pluginDocs(registry: PluginRegistry): string {
  const lines = [
    '# Plugins',
    '',
    'Generated from the plugin registry by `npm run docs` (`cli/plugin-docs.ts`); do not edit by hand: a test fails when',
    'this file and the registry disagree. `npm run plugins -- --json` lists the same plugins with their JSON options schemas.',
    '',
  ];
  for (const kind of PLUGIN_KINDS) {
    const list = registry.list(kind);
    if (list.length === 0) continue;
    lines.push(`## ${kind} (${list.length})`, '');
    if (CONFORMANCE[kind]) lines.push(`Every ${kind} is checked by the conformance suite: ${CONFORMANCE[kind]}.`, '');
    lines.push('| name | aliases | what, and its source | properties its own tests check |', '| --- | --- | --- | --- |');
    for (const p of list) {
      lines.push(`| \`${p.name}\` | ${p.aliases.map((a) => `\`${a}\``).join(', ')} | ${cell(p.description)} | ${cell(p.properties.join('; '))} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
