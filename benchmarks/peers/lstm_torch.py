"""PyTorch forward+backward tokens/s of a 2-layer LSTM LM body. Usage: lstm_torch.py [threads] [seconds] [repeats]

Shapes as in Zaremba et al.'s medium model: hidden 650, batch 20, unroll 35, input = embeddings of size 650.
Loss: sum of the outputs (the benchmark times the recurrent layers, not a softmax over a vocabulary).
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
hidden, batch, steps = 650, 20, 35
lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
x = torch.randn(batch, steps, hidden)


def step():
    lstm.zero_grad(set_to_none=True)
    out, _ = lstm(x)
    out.sum().backward()


emit(value=measure(step, batch * steps, seconds=seconds, repeats=repeats), unit="tokens/s", peer=f"PyTorch {torch.__version__}", detail=torch_threads(threads))
