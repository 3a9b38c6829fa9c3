"""PyTorch greedy generation with a key/value cache, batch 1. Usage: gpt_generate_torch.py [threads] [seconds] [new_tokens] [fp32|int8]

The architecture of loom's `gpt` model (plugins/models/gpt.ts; nanoGPT's): token + learned position embeddings,
pre-norm blocks of causal self-attention and a tanh-GELU MLP (4 d), a final layer norm, logits through the tied
embedding. Size: papers/gpt's gpu preset (vocab 89, d 384, 6 heads, 6 layers) with a context of 320 so that a
1-token prompt and 256 new tokens fit. Each step feeds one token, appends its keys and values to the cache and
takes the argmax (the work of loom's generate at temperature 0). Random weights (speed does not depend on them).
int8: dynamic quantization of the Linear layers. Prints new tokens/s.
"""
import sys

import torch
from torch import nn
from torch.nn import functional as F

from common import attention, emit, measure, torch_threads

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
new_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 256
precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
VOCAB, CONTEXT, D, HEADS, LAYERS = 89, 320, 384, 6, 6
torch.set_num_threads(threads)
torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x, cache):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (z.view(b, t, HEADS, D // HEADS).transpose(1, 2) for z in (q, k, v))
        if cache:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        cache[:] = [k, v]
        y = attention(q, k, v, causal=t > 1)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, D))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(CONTEXT, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D)

    def forward(self, ids, position, caches):
        h = self.tok(ids) + self.pos(torch.arange(position, position + ids.shape[1]))
        for blk, c in zip(self.blocks, caches):
            h = blk(h, c)
        return self.ln(h[:, -1]) @ self.tok.weight.T


model = GPT().eval()
if precision == "int8":
    model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
assert 1 + new_tokens <= CONTEXT


def generate():
    with torch.inference_mode():
        caches = [[] for _ in range(LAYERS)]
        token = torch.zeros(1, 1, dtype=torch.long)
        for i in range(new_tokens):
            token = model(token, i, caches).argmax(-1, keepdim=True)
            token.item()  # the token is read back each step, as a sampler needs it


detail = f"{torch_threads(threads)}, {precision}{' (dynamic, Linear only)' if precision == 'int8' else ''}, d {D}, {LAYERS} layers"
emit(value=measure(generate, new_tokens, seconds=seconds, warmup=1), unit="tokens/s", peer=f"PyTorch {torch.__version__}", detail=detail)
