"""PyTorch on CUDA beside loom's webgpu check (README.md here): the same workloads as check.ts, timed on the GPU.

Usage: python3 torch_cuda.py [steps]   (prints one JSON line per row, then writes torch-cuda.json into $OUT)

Workloads (synthetic batches, as check.ts has them):
- mnist-cnn b128: Conv2d(1->32, 3x3) ReLU, MaxPool 2, Flatten, Linear(5408->64) ReLU, Linear(64->10), Adam(1e-3,
  eps 1e-7), cross-entropy: one training step (papers/mnist-cnn, as benchmarks/peers/mnist_cnn_torch.py);
- lstm 2x650 b20 t35 and transformer encoder 256/4/1024 t64 b32: forward + backward of the sum of the outputs
  (benchmarks/peers/lstm_torch.py and transformer_torch.py, the `npm run bench` sequence rows);
- g2p transformer b64: nn.Transformer at papers/transformer's cpu size (3 + 3 post-norm layers, d 256, 4 heads,
  ff 1024, dropout 0.1, sources and targets of 24 ids, vocabularies 30 and 42) with embeddings and an output
  projection, cross-entropy with label smoothing 0.1 ignoring id 0, Adam: one training step. nn.Transformer is the
  same architecture as loom's transformer-seq2seq, not its code; a timing peer, not a numerical one;
- gpt b64: papers/gpt's gpu preset (6 pre-norm layers, d 384, 6 heads, context 256, vocabulary 89, dropout 0.2 on
  residuals and attention probabilities, tied embeddings), AdamW, gradients clipped to norm 1: one training step.
Each row: the mean over `steps` steps after 3 warm-up steps, CUDA synchronised around the timed loop. Precision:
`fp32` turns TF32 off for matrix products and cuDNN (what loom's webgpu computes: fp32 throughout); `tf32` is
PyTorch's default for cuDNN convolutions plus TF32 matrix products (PyTorch at its fastest without changing dtypes).
"""
import json
import math
import os
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
dev = torch.device(os.environ.get("TORCH_DEVICE", "cuda"))  # TORCH_DEVICE=cpu: to try the script on a machine without a GPU
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
rows = []


def timed(name, unit, items, step, precision):
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    ms = (time.perf_counter() - t0) / steps * 1000
    row = {"workload": name, "precision": precision, "msPerStep": round(ms, 3), unit: round(items / ms * 1000, 1), "steps": steps}
    rows.append(row)
    print(json.dumps(row), flush=True)


def mnist():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    x = torch.rand(128, 1, 28, 28, device=dev)
    y = torch.arange(128, device=dev) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def lstm():
    torch.manual_seed(0)
    net = nn.LSTM(650, 650, num_layers=2, batch_first=True).to(dev)
    x = torch.randn(20, 35, 650, device=dev)

    def step():
        net.zero_grad(set_to_none=True)
        out, _ = net(x)
        out.sum().backward()

    return step


def encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True).to(dev)
    x = torch.randn(32, 64, 256, device=dev)

    def step():
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    return step


class G2P(nn.Module):
    def __init__(self):
        super().__init__()
        self.src, self.tgt = nn.Embedding(30, 256), nn.Embedding(42, 256)
        self.body = nn.Transformer(256, 4, 3, 3, 1024, dropout=0.1, batch_first=True)
        self.out = nn.Linear(256, 42)
        pos = torch.arange(24)[:, None] / torch.pow(10000, torch.arange(0, 256, 2) / 256)
        self.register_buffer("pos", torch.stack([pos.sin(), pos.cos()], -1).reshape(24, 256))

    def forward(self, src, tgt):
        causal = torch.triu(torch.full((24, 24), float("-inf"), device=src.device), 1)
        h = self.body(self.src(src) * 16 + self.pos, self.tgt(tgt) * 16 + self.pos, tgt_mask=causal, src_key_padding_mask=src == 0, memory_key_padding_mask=src == 0)
        return self.out(h)


def g2p():
    torch.manual_seed(0)
    model = G2P().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    i = torch.arange(64 * 24, device=dev).reshape(64, 24)
    src, tgt, y = 1 + (i * 7) % 29, 1 + (i * 11) % 41, 1 + (i * 13) % 41

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(src, tgt).reshape(-1, 42), y.reshape(-1), label_smoothing=0.1, ignore_index=0).backward()
        opt.step()

    return step


def attention(q, k, v, p):
    """Causal softmax(q kᵀ/√d) v with dropout p on the probabilities: PyTorch's fused kernel where it has one (2.0+)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
    t = q.shape[2]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return F.dropout(s.softmax(-1), p) @ v


class Block(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.heads, self.p = heads, p
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(d, 2))
        a = attention(q, k, v, self.p if self.training else 0.0)
        x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(b, t, d)), self.p, self.training)
        return x + F.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh")), self.p, self.training)


class GPT(nn.Module):
    def __init__(self, vocab=89, context=256, d=384, heads=6, layers=6, p=0.2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads, p) for _ in range(layers))
        self.ln, self.p = nn.LayerNorm(d), p
        for name, w in self.named_parameters():
            if w.dim() > 1:
                nn.init.normal_(w, 0, 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "fc2.weight")) else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(w)

    def forward(self, ids):
        x = F.dropout(self.tok(ids) + self.pos.weight[: ids.shape[1]], self.p, self.training)
        for blk in self.blocks:
            x = blk(x)
        return self.ln(x) @ self.tok.weight.T


def gpt():
    torch.manual_seed(0)
    model = GPT().to(dev)
    decay = [w for n, w in model.named_parameters() if w.dim() > 1]
    rest = [w for n, w in model.named_parameters() if w.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    ids = (torch.arange(64 * 256, device=dev).reshape(64, 256) * 7919) % 89

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(ids).reshape(-1, 89), ids.reshape(-1)).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


report = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
print(json.dumps(report), flush=True)
workloads = [
    ("mnist-cnn b128", "samples/s", 128, mnist),
    ("lstm 2x650 b20 t35 fwd+bwd", "tokens/s", 20 * 35, lstm),
    ("transformer encoder 256/4/1024 t64 b32 fwd+bwd", "tokens/s", 32 * 64, encoder),
    ("g2p transformer (cpu preset size) b64", "tokens/s", 64 * 24, g2p),
    ("gpt (papers/gpt gpu preset) b64", "tokens/s", 64 * 256, gpt),
]
for precision in ("fp32", "tf32"):
    for name, unit, items, make in workloads:
        timed(name, unit, items, make(), precision)
report["rows"] = rows
out = os.environ.get("OUT", ".")
with open(os.path.join(out, "torch-cuda.json"), "w") as f:
    json.dump(report, f, indent=2)
