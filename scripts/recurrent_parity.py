#!/usr/bin/env python3
"""Reference outputs and gradients of the recurrent stacks, from PyTorch, for RecurrentTests.

Writes Tests/CaptionKitTests/Fixtures/recurrent/parity.json. Run from the package root with a venv
holding torch (e.g. `python3 -m venv /work/venv-cells && /work/venv-cells/bin/pip install torch numpy`):

    /work/venv-cells/bin/python scripts/recurrent_parity.py

How each cell is computed, independently of the Swift code:
- lstm, gru, rnn: PyTorch's own nn.LSTM / nn.GRU / nn.RNN (one module per layer) fed [x_t ; m_t·v],
  with weight_ih = [W_ih | W_iv]: that is SPEC §1/§3's image term exactly (m_t = 1 for `every`,
  m_t = [t = 0] for `first`; for the GRU, W_in [x; v] = W_in x + W_iv,n v joins the input side).
  Layer l > 0 reads [h_{l−1,t} ; m_t·v].
- peephole, coupled: SPEC §3's equations written out with torch autograd.
Everything in float64. The loss is Σ out ⊙ R with a fixed random R; its gradients are stored.
"""
import json
import os

import torch

torch.manual_seed(20261127)
DT = torch.float64
T, B, IN, H, DV, LAYERS = 4, 3, 5, 4, 3, 2
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "peephole": 4, "coupled": 3}


def uniform(*shape, scale=0.5):
    return ((torch.rand(*shape, dtype=DT) * 2 - 1) * scale).requires_grad_(True)


def make_params(cell, prefix_in, direction=""):
    """Per layer: weight_ih, weight_hh, weight_iv, bias_ih, bias_hh (weight_peep)."""
    params = []
    for l in range(LAYERS):
        g = GATES[cell] * H
        in_l = prefix_in if l == 0 else (H if not direction else 2 * H)
        p = {
            "weight_ih": uniform(g, in_l),
            "weight_hh": uniform(g, H),
            "weight_iv": uniform(g, DV),
            "bias_ih": uniform(g),
            "bias_hh": uniform(g),
        }
        if cell == "peephole":
            p["weight_peep"] = uniform(3, H)
        params.append(p)
    return params


def image_mask(mode):
    m = torch.ones(T, 1, 1, dtype=DT)
    if mode == "first":
        m[1:] = 0
    return m


def torch_module_layer(cell, p, x, v, mode):
    """One layer through PyTorch's own module, input [x ; m·v]."""
    in_l = x.shape[2]
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    module = cls(in_l + DV, H, num_layers=1, dtype=DT)
    # Use the tensors themselves (not copies) so their gradients flow back to p.
    weights = {
        "weight_ih_l0": torch.cat([p["weight_ih"], p["weight_iv"]], dim=1),
        "weight_hh_l0": p["weight_hh"],
        "bias_ih_l0": p["bias_ih"],
        "bias_hh_l0": p["bias_hh"],
    }
    xv = torch.cat([x, image_mask(mode) * v.unsqueeze(0).expand(T, B, DV)], dim=2)
    out, _ = torch.func.functional_call(module, weights, (xv,))
    return out


def manual_layer(cell, p, x, v, mode):
    """peephole / coupled, SPEC §3 written out."""
    h = torch.zeros(B, H, dtype=DT)
    c = torch.zeros(B, H, dtype=DT)
    outs = []
    for t in range(T):
        a = x[t] @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
        if mode == "every" or t == 0:
            a = a + v @ p["weight_iv"].T
        if cell == "peephole":
            ai, af, ag, ao = a.split(H, dim=1)
            pi, pf, po = p["weight_peep"]
            i = torch.sigmoid(ai + pi * c)
            f = torch.sigmoid(af + pf * c)
            c = f * c + i * torch.tanh(ag)
            o = torch.sigmoid(ao + po * c)
            h = o * torch.tanh(c)
        else:  # coupled: rows f, g, o; i = 1 − f
            af, ag, ao = a.split(H, dim=1)
            f = torch.sigmoid(af)
            c = f * c + (1 - f) * torch.tanh(ag)
            h = torch.sigmoid(ao) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


def flat(t):
    # 9 significant digits: every float32 round-trips, far below the tests' tolerances for float64
    return [float(f"{z:.9g}") for z in t.detach().reshape(-1).tolist()]


def record(name, cell, mode, bidirectional, lengths, x, v, named, out):
    weights = torch.rand(out.shape, dtype=DT) * 2 - 1
    loss = (out * weights).sum()
    tensors = [x, v] + [t for _, t in named]
    grads = torch.autograd.grad(loss, tensors)
    return {
        "name": name,
        "cell": cell,
        "image_input": mode,
        "bidirectional": bidirectional,
        "lengths": lengths,
        "T": T, "B": B, "input": IN, "hidden": H, "dv": DV, "layers": LAYERS,
        "inputs": flat(x),
        "image": flat(v),
        "output_weights": flat(weights),
        "output": flat(out),
        "input_grad": flat(grads[0]),
        "image_grad": flat(grads[1]),
        "parameters": [
            {"name": n, "shape": list(t.shape), "value": flat(t), "grad": flat(g)}
            for (n, t), g in zip(named, grads[2:])
        ],
    }


def stack_case(cell, mode):
    x = uniform(T, B, IN, scale=1.0)
    v = uniform(B, DV, scale=1.0)
    params = make_params(cell, IN)
    h = x
    for p in params:
        if cell in ("lstm", "gru", "rnn"):
            h = torch_module_layer(cell, p, h, v, mode)
        else:
            h = manual_layer(cell, p, h, v, mode)
    named = [(f"{l}.{k}", t) for l, p in enumerate(params) for k, t in p.items()]
    return record(f"{cell} {mode}", cell, mode, False, None, x, v, named, h)


def main():
    cases = []
    for cell in ("lstm", "gru", "rnn", "peephole", "coupled"):
        for mode in ("every", "first"):
            cases.append(stack_case(cell, mode))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(root, "Tests", "CaptionKitTests", "Fixtures", "recurrent")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "parity.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"generator": "scripts/recurrent_parity.py", "torch": torch.__version__, "cases": cases}, f)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
