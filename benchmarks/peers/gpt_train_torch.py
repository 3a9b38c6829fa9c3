"""A PyTorch replica of loom's GPT training run (papers/gpt, preset `cpu`), the anchor for loom's validation loss.

Usage: gpt_train_torch.py DATA_DIR SEED [threads] [validate_every] [max_steps]

DATA_DIR holds what loom's data source gives (written by benchmarks/gpt-replica.ts, so both read the same numbers):
`train.i32` and `valid.i32` (the token ids of Moby Dick's first 90 % and last 10 %, int32 little-endian), and
`config.json` (the resolved preset: model, optimizer, schedule, trainer, data). Everything else is the recipe of
loom's run, written from its definitions:
- model (plugins/models/gpt.ts): token + learned position embeddings, pre-norm blocks of causal self-attention
  (one fused q,k,v projection with bias, softmax(q kᵀ/√d_head) v, output projection) and a tanh-GELU MLP of 4·d,
  layer norms with ε 1e-5, a final layer norm, logits through the tied token embedding; GPT-2 initialization:
  every kernel and embedding N(0, 0.02), the two projections into the residual stream N(0, 0.02/√(2·layers)),
  biases 0 (Radford et al. 2019 §2.3);
- data (plugins/data/char-text.ts): windows of `context` characters starting every `stride` characters, targets
  shifted by one; an epoch visits every window once in a random order (torch.randperm from the seed: a different
  permutation from loom's, the same logic), in batches of `batchSize`, the last one smaller;
- loss: mean cross-entropy over every position of the batch;
- AdamW (plugins/optimizers/adam.ts; Loshchilov & Hutter 2019): θ ← θ·(1 − lr·wd) for every parameter but biases and
  norms, then Adam with bias correction and ε added to √v̂; gradients clipped to a global norm of `clipNorm`
  (g ← g·c/‖g‖ when ‖g‖ > c, Pascanu et al. 2013);
- schedule (plugins/schedules/cosine-warmup.ts): lr·(s+1)/warmup for step s < warmup, then cosine to minLr at
  `totalSteps`;
- validation: mean loss over every validation window, in batches of `evalBatchSize`, every `validate_every` steps
  and at the end.
Prints one JSON line per validation ({"step", "val_loss", "seconds"}) and per logged window of training losses
({"step", "batch_loss"}, mean of the last `logEvery` steps), then a summary line ({"summary": ...}).
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common import attention, torch_threads

data_dir, seed = sys.argv[1], int(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
validate_every = int(sys.argv[4]) if len(sys.argv) > 4 else 200
max_steps = int(sys.argv[5]) if len(sys.argv) > 5 else None
torch.set_num_threads(threads)
torch.manual_seed(seed)

cfg = json.load(open(os.path.join(data_dir, "config.json")))
m, opt, sch, tr, src = cfg["model"], cfg["optimizer"], cfg["schedule"], cfg["trainer"], cfg["data"]["source"]
VOCAB, CONTEXT, D, HEADS, LAYERS = m["vocabSize"], m["context"], m["dModel"], m["numHeads"], m["layers"]
assert m.get("dropout", 0) == 0 and m.get("attentionDropout", 0) == 0, "the replica covers the dropout-free cpu preset"
assert m.get("init", "gpt2") == "gpt2" and m.get("tieEmbeddings", True)


def tokens(split):
    return torch.from_numpy(np.fromfile(os.path.join(data_dir, f"{split}.i32"), dtype="<i4").astype(np.int64))


train, valid = tokens("train"), tokens("valid")
stride = src["stride"]
n_train = (len(train) - CONTEXT - 1) // stride + 1
n_valid = (len(valid) - CONTEXT - 1) // stride + 1
offsets = torch.arange(CONTEXT)


def windows(t, idx):
    s = idx[:, None] * stride + offsets
    return t[s], t[s + 1]


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (z.view(b, t, HEADS, D // HEADS).transpose(1, 2) for z in (q, k, v))
        y = attention(q, k, v, causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, D))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(CONTEXT, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D, eps=1e-5)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("proj.weight", "fc2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        h = self.tok(ids) + self.pos(offsets[: ids.shape[1]])
        for blk in self.blocks:
            h = blk(h)
        return self.ln(h) @ self.tok.weight.T


model = GPT()
decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or ".ln" in n or n.startswith("ln"))]
keep = [p for n, p in model.named_parameters() if n.endswith("bias") or ".ln" in n or n.startswith("ln")]
assert len(decay) + len(keep) == len(list(model.parameters()))
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": opt["weightDecay"]}, {"params": keep, "weight_decay": 0.0}],
    lr=sch["lr"],
    betas=(opt["beta1"], opt["beta2"]),
    eps=opt["epsilon"],
)


def rate(step):
    warm, total, lr, lo = sch["warmupSteps"], sch["totalSteps"], sch["lr"], sch.get("minLr", 0)
    if step < warm:
        return lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / (total - warm))
    return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * progress))


def evaluate():
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for s in range(0, n_valid, tr["evalBatchSize"]):
            idx = torch.arange(s, min(s + tr["evalBatchSize"], n_valid))
            x, y = windows(valid, idx)
            total += F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).item() * len(idx)
    model.train()
    return total / n_valid


def emit(**fields):
    print(json.dumps(fields), flush=True)


bs, log_every, clip = tr["batchSize"], tr.get("logEvery", 10), tr.get("clipNorm")
steps_per_epoch = math.ceil(n_train / bs)
planned = steps_per_epoch * tr["epochs"] if max_steps is None else min(max_steps, steps_per_epoch * tr["epochs"])
gen = torch.Generator().manual_seed(seed)
step, window, t0 = 0, [], time.perf_counter()
curve = []
for epoch in range(tr["epochs"]):
    order = torch.randperm(n_train, generator=gen)
    for b in range(0, n_train, bs):
        if step >= planned:
            break
        x, y = windows(train, order[b : b + bs])
        for g in optimizer.param_groups:
            g["lr"] = rate(step)
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()
            if norm > clip:
                for p in model.parameters():
                    p.grad.mul_(clip / norm)
        optimizer.step()
        step += 1
        window.append(loss.item())
        if step % log_every == 0:
            emit(step=step, batch_loss=sum(window) / len(window))
            window = []
        if step % validate_every == 0 and step < planned:
            v = evaluate()
            curve.append([step, v])
            emit(step=step, val_loss=v, seconds=time.perf_counter() - t0)
final = evaluate()
curve.append([step, final])
wall = time.perf_counter() - t0
emit(step=step, val_loss=final, seconds=wall)
emit(
    summary={
        "peer": f"PyTorch {torch.__version__}",
        "detail": torch_threads(threads),
        "seed": seed,
        "steps": step,
        "val_loss": final,
        "wall_seconds": wall,
        "parameters": sum(p.numel() for p in model.parameters()),
        "curve": curve,
    }
)
