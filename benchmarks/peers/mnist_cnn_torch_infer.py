"""PyTorch inference throughput of the seed's MNIST CNN. Usage: mnist_cnn_torch_infer.py BATCH [threads] [seconds] [fp32|int8]

The model of papers/mnist-cnn (Conv2d(1->32, 3x3) ReLU, MaxPool 2, Flatten, Linear(5408->64) ReLU, Linear(64->10))
in eval mode under torch.inference_mode; random inputs (speed does not depend on the data). int8: PyTorch's dynamic
quantization of the Linear layers (torch.ao.quantization.quantize_dynamic; convolutions stay fp32, as PyTorch's
dynamic mode has no quantized convolution). Prints inferences/s (samples/s).

At PyTorch's best as mnist_cnn_torch.py is: `common` sets glibc malloc's thresholds (at batch 128 each
inference had page-faulted its 11 MiB convolution output in again: 5,400-8,000 faults, half the speed), and the
harness tries 1 thread, 2 threads, and 2 threads with sleeping idle threads, reporting the fastest.
"""
import sys

import torch
from torch import nn

from common import emit, measure, torch_threads

batch = int(sys.argv[1])
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
torch.set_num_threads(threads)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
if precision == "int8":
    model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
x = torch.rand(batch, 1, 28, 28)


def step():
    with torch.inference_mode():
        model(x)


detail = f"{torch_threads(threads)}, {precision}{' (dynamic, Linear only)' if precision == 'int8' else ''}, engine {torch.backends.quantized.engine}"
emit(value=measure(step, batch, seconds=seconds), unit="samples/s", peer=f"PyTorch {torch.__version__}", detail=detail)
