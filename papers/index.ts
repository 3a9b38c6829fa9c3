/** Every paper reproduction, by name. A new paper is one folder under papers/ and one line here. */
import type { Paper } from '../runtime';
import bert from './bert';
import gpt from './gpt';
import mnistCnn from './mnist-cnn';
import transformer from './transformer';
import variationalLstm from './variational-lstm';

export const papers: Record<string, Paper> = {
  [mnistCnn.name]: mnistCnn,
  [variationalLstm.name]: variationalLstm,
  [transformer.name]: transformer,
  [gpt.name]: gpt,
  [bert.name]: bert,
};
