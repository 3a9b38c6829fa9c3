/**
 * Tokenizers: WordPiece for BERT and byte-level BPE for GPT, trained here on the corpora in the npm data packages
 * and saved as JSON. `tokenizerFromState` rebuilds either from what `getState` wrote.
 */
import { DataError, type JsonObject, type Tokenizer } from '../../core';
import { ByteBpe } from './byte-bpe';
import { WordPiece } from './wordpiece';

export { ByteBpe, GPT2_SPLIT } from './byte-bpe';
export { WordPiece, WORDPIECE_SPECIALS } from './wordpiece';

export function tokenizerFromState(json: JsonObject): Tokenizer {
  if (json.type === 'wordpiece') return WordPiece.fromState(json);
  if (json.type === 'byte-bpe') return ByteBpe.fromState(json);
  throw new DataError(`tokenizer: unknown type ${JSON.stringify(json.type)}; known: wordpiece, byte-bpe`);
}
