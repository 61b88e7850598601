#!/usr/bin/env python3
"""The local fine-tune's training step in PyTorch, for a side-by-side with `robustd-bench train`.

The same work: the top two layers of all-MiniLM-L6-v2 (weights from model.safetensors), mean
pooling, L2 normalisation, a linear head over 77 intents, cross-entropy, AdamW on the layers
(top-layers) or on rank-8 adapters of the six projections (lora) and the head; batch 32, one
epoch over examples whose token counts `robustd-bench train --lengths-out FILE` wrote, each
batch padded to its longest sequence with an attention mask (as a PyTorch user runs BERT).
Inputs are the lower layers' outputs in robustd; here random states of the same shapes (speed
depends on shapes only). Run it from a throwaway venv (pip install torch safetensors); never in
CI. Usage: torch-train.py MODEL_DIR LENGTHS_FILE [--threads N] [--method top-layers|lora] [--sorted]
"""
import argparse, math, os, random, time
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("model"); p.add_argument("lengths")
p.add_argument("--threads", type=int, default=1); p.add_argument("--method", default="top-layers")
p.add_argument("--batch", type=int, default=32); p.add_argument("--classes", type=int, default=77)
p.add_argument("--sorted", action="store_true", help="batches of similar lengths (least padding), then shuffled")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1); random.seed(1)
w = load_file(os.path.join(a.model, "model.safetensors"))
pre = "bert." if any(k.startswith("bert.") for k in w) else ""
H, NH, L = 384, 12, 6
lora = a.method == "lora"

class Proj(torch.nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(weight.clone(), requires_grad=not lora)
        self.bias = torch.nn.Parameter(bias.clone(), requires_grad=not lora)
        if lora:
            o, i = weight.shape
            self.A = torch.nn.Parameter(torch.randn(8, i) / math.sqrt(i)); self.B = torch.nn.Parameter(torch.zeros(o, 8))
    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        return y + (16 / 8) * F.linear(F.linear(x, self.A), self.B) if lora else y

class Layer(torch.nn.Module):
    def __init__(self, l):
        super().__init__()
        g = lambda n: w[f"{pre}encoder.layer.{l}.{n}"]
        self.q, self.k, self.v = (Proj(g(f"attention.self.{n}.weight"), g(f"attention.self.{n}.bias")) for n in ("query", "key", "value"))
        self.o = Proj(g("attention.output.dense.weight"), g("attention.output.dense.bias"))
        self.n1 = torch.nn.LayerNorm(H, eps=1e-12); self.n1.weight.data = g("attention.output.LayerNorm.weight").clone(); self.n1.bias.data = g("attention.output.LayerNorm.bias").clone()
        self.fi = Proj(g("intermediate.dense.weight"), g("intermediate.dense.bias"))
        self.fo = Proj(g("output.dense.weight"), g("output.dense.bias"))
        self.n2 = torch.nn.LayerNorm(H, eps=1e-12); self.n2.weight.data = g("output.LayerNorm.weight").clone(); self.n2.bias.data = g("output.LayerNorm.bias").clone()
        if lora:
            for n in (self.n1, self.n2): n.weight.requires_grad_(False); n.bias.requires_grad_(False)
    def forward(self, x, mask):
        B, T, _ = x.shape
        heads = lambda t: t.view(B, T, NH, H // NH).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=mask[:, None, None, :])
        x = self.n1(x + self.o(ctx.transpose(1, 2).reshape(B, T, H)))
        return self.n2(x + self.fo(F.gelu(self.fi(x))))

layers = torch.nn.ModuleList([Layer(l) for l in (L - 2, L - 1)])
head = torch.nn.Linear(H, a.classes)
params = [q for q in list(layers.parameters()) + list(head.parameters()) if q.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
lengths = [int(s) for s in open(a.lengths).read().split()]
labels = [random.randrange(a.classes) for _ in lengths]
order = list(range(len(lengths))); random.shuffle(order)
if a.sorted: order.sort(key=lambda i: lengths[i])
batches = [order[i:i + a.batch] for i in range(0, len(order), a.batch)]
if a.sorted: random.shuffle(batches)
data = {i: torch.randn(n, H) for i, n in enumerate(lengths)}

def step(idx):
    T = max(lengths[i] for i in idx)
    x = torch.zeros(len(idx), T, H); mask = torch.zeros(len(idx), T, dtype=torch.bool)
    for b, i in enumerate(idx): x[b, :lengths[i]] = data[i]; mask[b, :lengths[i]] = True
    h = x
    for l in layers: h = l(h, mask)
    m = mask.unsqueeze(-1).float()
    pooled = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    loss = F.cross_entropy(head(pooled), torch.tensor([labels[i] for i in idx]))
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()

for idx in batches[:2]: step(idx)  # warm-up
t0 = time.perf_counter()
for idx in batches: step(idx)
s = time.perf_counter() - t0
print(f"pytorch {torch.__version__}  {a.method:<11} threads {a.threads}  {'length-sorted' if a.sorted else 'padded per batch'}  {len(lengths) / s:8.1f} examples/s  {s / len(batches) * 1000:7.2f} ms a step")
