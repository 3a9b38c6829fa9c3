/**
 * Files loom derives and can rebuild live in ./cache, not under ./checkpoints, whose folders `--resume latest`
 * scans for runs: the BERT paper's trained WordPiece vocabulary used to be written to checkpoints/bert/, where it
 * made `--resume latest` crash with ENOTDIR. (The runs themselves are cut short by an invalid pretraining field,
 * right after the tokenizer step.)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../core';
import { cachePath, findLatestCheckpoint } from '../runtime';
import { papers } from '../papers';
import { testRegistry } from './harness';

const overrides = { bert: { tokenizerChars: 4000, vocabSize: 120 }, pretrain: { trainer: { epochs: 0 } } };
const cutShort = async () => {
  const registry = await testRegistry();
  await expect(papers.bert!.run({ registry, preset: 'smoke', overrides })).rejects.toThrow(ConfigError);
};

afterEach(() => {
  for (const d of ['cache', 'checkpoints', 'elsewhere']) fs.rmSync(d, { recursive: true, force: true });
  delete process.env.LOOM_CACHE_DIR;
});

describe('the cache folder', () => {
  it('holds the BERT tokenizer; nothing is written under ./checkpoints before a run checkpoints', async () => {
    await cutShort();
    const file = path.resolve('cache', 'bert', 'wordpiece-smoke-120.json');
    expect(cachePath('bert', 'wordpiece-smoke-120.json')).toBe(file);
    expect((JSON.parse(fs.readFileSync(file, 'utf8')) as { vocab: string[] }).vocab.length).toBeGreaterThan(50);
    expect(fs.existsSync('checkpoints')).toBe(false);
    expect(findLatestCheckpoint('bert')).toBeNull();
  });

  it('takes over a tokenizer an older loom left under ./checkpoints, which then holds runs only', async () => {
    const legacy = path.resolve('checkpoints', 'bert', 'wordpiece-smoke-120.json');
    fs.mkdirSync(path.dirname(legacy), { recursive: true });
    const trained = JSON.stringify({ type: 'wordpiece', vocab: ['[PAD]', '[UNK]', 'a'] });
    fs.writeFileSync(legacy, trained);
    await cutShort();
    expect(fs.readFileSync(path.resolve('cache', 'bert', 'wordpiece-smoke-120.json'), 'utf8')).toBe(trained); // moved, not retrained
    expect(fs.readdirSync('checkpoints')).toEqual([]);
  });

  it('moves with LOOM_CACHE_DIR', async () => {
    process.env.LOOM_CACHE_DIR = 'elsewhere';
    await cutShort();
    expect(fs.existsSync(path.resolve('elsewhere', 'bert', 'wordpiece-smoke-120.json'))).toBe(true);
    expect(fs.existsSync('cache')).toBe(false);
  });
});
