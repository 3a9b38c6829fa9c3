/** Every paper reproduction, by name. A new paper is one folder under papers/ and one line here. */
import type { Paper } from '../core';
import mnistCnn from './mnist-cnn';

export const papers: Record<string, Paper> = {
  [mnistCnn.name]: mnistCnn,
};
