"""PyTorch training throughput of the seed's MNIST CNN (samples/s). Usage: mnist_cnn_torch.py BATCH [threads] [seconds]

Same model and optimizer as papers/mnist-cnn: Conv2d(1->32, 3x3) ReLU, MaxPool 2, Flatten, Linear(5408->64) ReLU,
Linear(64->10), Adam(lr 1e-3, eps 1e-7), cross-entropy from logits. Random inputs in [0, 1), one fixed batch, as loom's
row (benchmarks/mnist-cnn.ts) trains. PyTorch's speed does depend on the data: at batch 32, 1 thread, real MNIST
images (80 % blank pixels) trained at 6,200-6,900 samples/s where these random ones train at 4,400-5,400 (quiet,
2-core Zen 4), consistent with ATen's branchy NCHW max pooling predicting well over blank regions. Both sides see
the same inputs here; the full-recipe replica (mnist_full_torch.py) and benchmarks/mnist-e2e.ts are the real-data
comparison.

At PyTorch's best on a 2-core host: importing `common` keeps freed memory in the process (glibc malloc thresholds;
without it every step page-faulted its activations in again and the peer ran at half the replica's rate), and
the harness tries 1 thread, 2 threads, and 2 threads whose idle OpenMP and OpenBLAS threads sleep
(harness.ts TORCH_SETTINGS), reporting the fastest; the row's detail says which.
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
