"""PyTorch beam-search decoding of the G2P Transformer. Usage: g2p_beam_torch.py [threads] [seconds] [words] [steps] [beam] [fp32|int8]

The architecture of loom's `transformer-seq2seq` at papers/transformer's cpu size (3 + 3 post-norm layers, d 256,
4 heads, ff 1024 ReLU, source vocabulary 30, target 42, sources of 24 ids): embeddings scaled by sqrt(d) plus
sinusoidal positions, source padding masked. Decoding as loom's beamSearch does it: the encoder once, then one
position per step for all words x beam rows, self-attention keys/values cached and reordered with their
hypotheses, cross-attention keys/values computed once. Every word decodes exactly `steps` positions (no
end-of-sequence token is ever chosen: loom's side sets eosId outside the vocabulary), so both sides do the same
work. The sources: word i has 4 + (7 i mod 9) letters, letter j = 3 + ((13 i + 5 j) mod 27) (the same formula as
benchmarks/inference.ts). Random weights. int8: dynamic quantization of the Linear layers. Prints words/s.
"""
import math
import sys

import torch
from torch import nn
from torch.nn import functional as F

from common import attention, emit, measure, torch_threads

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
words = int(sys.argv[3]) if len(sys.argv) > 3 else 256
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 12
beam = int(sys.argv[5]) if len(sys.argv) > 5 else 4
precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
SRC_V, TGT_V, SRC_LEN, D, HEADS, FF, LAYERS, BOS = 30, 42, 24, 256, 4, 1024, 3, 1
torch.set_num_threads(threads)
torch.manual_seed(0)


def heads(x):
    b, t, _ = x.shape
    return x.view(b, t, HEADS, D // HEADS).transpose(1, 2)


def merge(x):
    b, _, t, _ = x.shape
    return x.transpose(1, 2).reshape(b, t, D)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    def kv(self, x):
        return heads(self.k(x)), heads(self.v(x))

    def forward(self, x, k, v, mask=None):
        return self.o(merge(attention(heads(self.q(x)), k, v, mask)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.att, self.n1, self.n2 = Attention(), nn.LayerNorm(D), nn.LayerNorm(D)
        self.f1, self.f2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, mask):
        x = self.n1(x + self.att(x, *self.att.kv(x), mask))
        return self.n2(x + self.f2(F.relu(self.f1(x))))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_att, self.cross = Attention(), Attention()
        self.n1, self.n2, self.n3 = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.f1, self.f2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def step(self, x, cache, memory_kv, mask):
        k, v = self.self_att.kv(x)
        if cache:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        cache[:] = [k, v]
        x = self.n1(x + self.self_att(x, k, v))
        x = self.n2(x + self.cross(x, *memory_kv, mask))
        return self.n3(x + self.f2(F.relu(self.f1(x))))


def sinusoid(n):
    pos = torch.arange(n).unsqueeze(1)
    div = torch.exp(torch.arange(0, D, 2) * (-math.log(10000.0) / D))
    pe = torch.zeros(n, D)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.src, self.tgt = nn.Embedding(SRC_V, D), nn.Embedding(TGT_V, D)
        self.enc = nn.ModuleList(Encoder() for _ in range(LAYERS))
        self.dec = nn.ModuleList(Decoder() for _ in range(LAYERS))
        self.out = nn.Linear(D, TGT_V)
        self.register_buffer("pe", sinusoid(SRC_LEN + 1))

    def beam_search(self, src):
        b = src.shape[0]
        mask = (src != 0)[:, None, None, :]  # [b, 1, 1, srcLen]: True where attended
        h = self.src(src) * math.sqrt(D) + self.pe[:SRC_LEN]
        for e in self.enc:
            h = e(h, mask)
        rows = torch.arange(b).repeat_interleave(beam)
        memory, mask = h[rows], mask[rows]
        memory_kv = [d.cross.kv(memory) for d in self.dec]
        caches = [[] for _ in self.dec]
        logp = torch.full((b, beam), -math.inf)
        logp[:, 0] = 0.0
        prev = torch.full((b * beam, 1), BOS, dtype=torch.long)
        tokens = torch.zeros(b, beam, 0, dtype=torch.long)
        for t in range(steps):
            x = self.tgt(prev) * math.sqrt(D) + self.pe[t]
            for d, c, kv in zip(self.dec, caches, memory_kv):
                x = d.step(x, c, kv, mask)
            scores = (logp.unsqueeze(2) + F.log_softmax(self.out(x[:, 0]), -1).view(b, beam, TGT_V)).view(b, -1)
            logp, index = scores.topk(beam, dim=1)
            origin, token = index // TGT_V, index % TGT_V
            tokens = torch.cat([tokens.gather(1, origin.unsqueeze(2).expand(-1, -1, tokens.shape[2])), token.unsqueeze(2)], 2)
            flat = (origin + torch.arange(b).unsqueeze(1) * beam).view(-1)
            for c in caches:
                c[:] = [c[0][flat], c[1][flat]]
            prev = token.view(-1, 1)
        return tokens[:, 0].tolist()


model = Seq2Seq().eval()
if precision == "int8":
    model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
src = torch.zeros(words, SRC_LEN, dtype=torch.long)
for i in range(words):
    for j in range(4 + (7 * i) % 9):
        src[i, j] = 3 + (13 * i + 5 * j) % 27


def decode():
    with torch.inference_mode():
        model.beam_search(src)


detail = f"{torch_threads(threads)}, {precision}{' (dynamic, Linear only)' if precision == 'int8' else ''}, beam {beam}, {steps} steps, {words} words a call"
emit(value=measure(decode, words, seconds=seconds, warmup=1), unit="words/s", peer=f"PyTorch {torch.__version__}", detail=detail)
