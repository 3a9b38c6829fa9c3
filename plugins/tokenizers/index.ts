/**
 * Tokenizers: WordPiece for BERT and byte-level BPE for GPT, trained here on the corpora in the npm data packages
 * and saved as JSON. `tokenizerFromJSON` rebuilds either from what `toJSON` wrote.
 */
import { DataError, type JsonObject, type Tokenizer } from '../../core';
import { ByteBpe } from './byte-bpe';
import { WordPiece } from './wordpiece';

export { ByteBpe, GPT2_SPLIT } from './byte-bpe';
export { WordPiece, WORDPIECE_SPECIALS } from './wordpiece';

export function tokenizerFromJSON(json: JsonObject): Tokenizer {
  if (json.type === 'wordpiece') return WordPiece.fromJSON(json);
  if (json.type === 'byte-bpe') return ByteBpe.fromJSON(json);
  throw new DataError(`tokenizer: unknown type ${JSON.stringify(json.type)}; known: wordpiece, byte-bpe`);
}
