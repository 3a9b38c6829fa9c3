"""PyTorch training throughput of the seed's MNIST CNN (samples/s). Usage: mnist_cnn_torch.py BATCH [threads] [seconds]

Same model and optimizer as papers/mnist-cnn: Conv2d(1->32, 3x3) ReLU, MaxPool 2, Flatten, Linear(5408->64) ReLU,
Linear(64->10), Adam(lr 1e-3, eps 1e-7), cross-entropy from logits. Random inputs (speed does not depend on data).
"""
import sys

import torch
from torch import nn

from common import emit, measure, torch_threads

batch = int(sys.argv[1])
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
torch.set_num_threads(threads)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
x = torch.rand(batch, 1, 28, 28)
y = torch.randint(0, 10, (batch,))
loss_fn = nn.CrossEntropyLoss()


def step():
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()


emit(value=measure(step, batch, seconds=seconds), unit="samples/s", peer=f"PyTorch {torch.__version__}", detail=torch_threads(threads))
