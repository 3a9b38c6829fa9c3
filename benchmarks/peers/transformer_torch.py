"""PyTorch forward+backward tokens/s of one Transformer encoder layer. Usage: transformer_torch.py [threads] [seconds] [repeats]

d_model 256, 4 heads, feed-forward 1024, sequence 64, batch 32, post-norm, ReLU, dropout 0 (timing only).
"""
import sys

import torch
from torch import nn

from common import emit, measure, torch_threads

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
torch.set_num_threads(threads)
torch.manual_seed(0)
d, heads, ff, seq, batch = 256, 4, 1024, 64, 32
layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True)
x = torch.randn(batch, seq, d)


def step():
    layer.zero_grad(set_to_none=True)
    layer(x).sum().backward()


emit(value=measure(step, batch * seq, seconds=seconds, repeats=repeats), unit="tokens/s", peer=f"PyTorch {torch.__version__}", detail=torch_threads(threads))
