#!/usr/bin/env python3
"""The `caption` network (docs/SPEC.md §1 and §3) in PyTorch, as the reference for parity
tests and the peer of `caption bench`.

The module's state_dict keys and shapes are exactly the model file's tensors (SPEC §3), so

    model, meta = load_caption_model("model.safetensors")     # load_state_dict(strict=True)

reads a model written by `caption train`, and `save_caption_model` writes one `caption` reads.

Shapes: B batch, T decoder steps, V vocabulary, E embedding, H hidden, Dv image vector, G gate blocks.
"""
import json
import os
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SPECIALS = ["<pad>", "<start>", "<end>", "<unk>"]
PAD, START, END, UNK = 0, 1, 2, 3
GATES = {"lstm": 4, "peephole": 4, "gru": 3, "coupled": 3, "rnn": 1}


# ---------------------------------------------------------------------------------------------------
# Encoder: conv3x3 (stride 1, padding 1) + ReLU for each channel count, 2x2/2 max-pool for "M",
# then a global average pool (pool "avg") or flatten in (C, H, W) order (pool "flatten"), then fc.

class Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.plan = []  # "M" or the name of a conv attribute, in order
        channels, size, k = 3, config["image_size"], 0
        for item in config["layers"]:
            if item == "M":
                self.plan.append("M")
                size //= 2  # odd sizes floor, as max_pool2d does
            else:
                setattr(self, f"conv{k}", nn.Conv2d(channels, int(item), 3, stride=1, padding=1))
                self.plan.append(f"conv{k}")
                channels, k = int(item), k + 1
        self.pool = config.get("pool", "avg")
        features = channels if self.pool == "avg" else channels * size * size
        self.fc = nn.Linear(features, config["dv"])

    def features(self, images):                     # images [B, 3, S, S] -> feature map [B, C, h, w]
        x = images
        for step in self.plan:
            if step == "M":
                x = F.max_pool2d(x, 2, 2)             # [B, C, h/2, w/2]
            else:
                x = F.relu(getattr(self, step)(x))    # [B, C_out, h, w]
        return x

    def block_means(self, images):                  # images [B, 3, S, S] -> [B, D] (SPEC §3c)
        x, means = images, []
        for k, step in enumerate(self.plan):
            if step == "M":
                x = F.max_pool2d(x, 2, 2)
            else:
                x = F.relu(getattr(self, step)(x))
            if step == "M" or k == len(self.plan) - 1:
                means.append(x.mean(dim=(2, 3)))      # each pool's output (and a last conv's)
        return torch.cat(means, 1)

    def forward(self, images):                      # images [B, 3, S, S], normalised
        x = self.features(images)
        if self.pool == "avg":
            x = x.mean(dim=(2, 3))                    # [B, C_last]
        else:
            x = x.flatten(1)                          # [B, C_last*h*w], (C, H, W) order
        return self.fc(x)                             # v [B, Dv]


# ---------------------------------------------------------------------------------------------------
# Recurrent cells. Each holds weight_ih [G*H, In], weight_hh [G*H, H], weight_iv [G*H, Dv],
# bias_ih [G*H], bias_hh [G*H] (and weight_peep [3, H] for the peephole LSTM). `image` is the image
# term W_iv v [B, G*H], computed once per sequence (or zero at steps where image_input leaves it out).

class Cell(nn.Module):
    def __init__(self, kind, input_size, hidden, dv):
        super().__init__()
        self.kind, self.hidden = kind, hidden
        rows = GATES[kind] * hidden
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden))
        self.weight_iv = nn.Parameter(torch.empty(rows, dv))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))
        if kind == "peephole":
            self.weight_peep = nn.Parameter(torch.empty(3, hidden))  # rows i, f, o
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch's recurrent initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every tensor.
        bound = self.hidden ** -0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def image_term(self, v):                           # v [B, Dv] -> [B, G*H]
        return v @ self.weight_iv.t()

    def zero_state(self, batch, like):
        h = like.new_zeros(batch, self.hidden)
        return (h, h.clone()) if self.kind in ("lstm", "peephole", "coupled") else (h,)

    def forward(self, x, state, image):                # x [B, In], state ([B, H], ...), image [B, G*H]
        gi = F.linear(x, self.weight_ih, self.bias_ih)           # W_ih x + b_ih   [B, G*H]
        gh = F.linear(state[0], self.weight_hh, self.bias_hh)    # W_hh h + b_hh   [B, G*H]
        h_prev = state[0]
        if self.kind == "rnn":
            # s_t = tanh(W_xh x_t + W_hh s_{t-1} + W_iv v + b)
            return (torch.tanh(gi + gh + image),)
        if self.kind == "gru":
            # r, z as usual; the image term joins the input side of n:
            # n = tanh(W_in x + b_in + W_iv,n v + r * (W_hn h + b_hn)); h = (1 - z) n + z h_prev
            gi_r, gi_z, gi_n = (gi + image).chunk(3, 1)
            gh_r, gh_z, gh_n = gh.chunk(3, 1)
            r = torch.sigmoid(gi_r + gh_r)
            z = torch.sigmoid(gi_z + gh_z)
            n = torch.tanh(gi_n + r * gh_n)
            return ((1 - z) * n + z * h_prev,)
        a = gi + gh + image                                       # gate pre-activations
        c_prev = state[1]
        if self.kind == "lstm":
            a_i, a_f, a_g, a_o = a.chunk(4, 1)
            c = torch.sigmoid(a_f) * c_prev + torch.sigmoid(a_i) * torch.tanh(a_g)
            return (torch.sigmoid(a_o) * torch.tanh(c), c)
        if self.kind == "peephole":
            # i, f see c_{t-1}; o sees the new cell c_t.
            a_i, a_f, a_g, a_o = a.chunk(4, 1)
            p_i, p_f, p_o = self.weight_peep[0], self.weight_peep[1], self.weight_peep[2]
            i = torch.sigmoid(a_i + p_i * c_prev)
            f = torch.sigmoid(a_f + p_f * c_prev)
            c = f * c_prev + i * torch.tanh(a_g)
            o = torch.sigmoid(a_o + p_o * c)
            return (o * torch.tanh(c), c)
        if self.kind == "coupled":
            # rows f, g, o; i = 1 - f
            a_f, a_g, a_o = a.chunk(3, 1)
            f = torch.sigmoid(a_f)
            c = f * c_prev + (1 - f) * torch.tanh(a_g)
            return (torch.sigmoid(a_o) * torch.tanh(c), c)
        raise ValueError(f"unknown cell {self.kind}")


# ---------------------------------------------------------------------------------------------------
# Decoder: embedding, a stack of cells (layer l > 0 reads layer l-1's h at the same step), output
# layer on the top h. image_input "every": W_iv v at every step; "first": at the <start> step only.

class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        V, E, H, Dv = config["vocab_size"], config["embed"], config["hidden"], config["dv"]
        self.image_input = config.get("image_input", "every")
        self.embed = nn.Embedding(V, E)
        self.rnn = nn.ModuleList(
            [Cell(config["cell"], E if l == 0 else H, H, Dv) for l in range(config["rnn_layers"])])
        self.out = nn.Linear(H, V)

    def initial_state(self, v):
        return [cell.zero_state(v.shape[0], v) for cell in self.rnn]

    def image_terms(self, v):
        return [cell.image_term(v) for cell in self.rnn]        # each [B, G*H], once per sequence

    def step(self, tokens, states, images, first):             # tokens [B] -> logits [B, V]
        x = self.embed(tokens)                                  # [B, E]
        new_states = []
        for cell, state, image in zip(self.rnn, states, images):
            use = image if (first or self.image_input == "every") else torch.zeros_like(image)
            state = cell(x, state, use)
            new_states.append(state)
            x = state[0]                                         # this layer's h feeds the next
        return self.out(x), new_states

    def forward(self, v, inputs):                              # v [B, Dv], inputs [B, T] -> [B, T, V]
        states, images = self.initial_state(v), self.image_terms(v)
        logits = []
        for t in range(inputs.shape[1]):
            step_logits, states = self.step(inputs[:, t], states, images, first=(t == 0))
            logits.append(step_logits)
        return torch.stack(logits, 1)


# ---------------------------------------------------------------------------------------------------
# The retrieval part (SPEC §3b): a sentence encoder (embedding, deep bidirectional RNN over the real
# words, per word [forward ; backward], mean over the words, text_proj, L2 normalisation) and an image
# projection (image_proj on v, L2 normalisation) into one joint space; score = cosine. The recurrent
# cells are the decoder's with no image term (a one-wide zero image, so no weight_iv is kept).

class BidirectionalLayer(nn.Module):
    def __init__(self, kind, input_size, hidden):
        super().__init__()
        self.fwd = Cell(kind, input_size, hidden, 1)
        self.bwd = Cell(kind, input_size, hidden, 1)
        del self.fwd.weight_iv, self.bwd.weight_iv      # the retrieval cells read no image

    def run(self, cell, x, lengths, reverse):           # x [B, T, In] -> [B, T, H], zero at padding
        B, T, _ = x.shape
        H = cell.hidden
        out = x.new_zeros(B, T, H)
        no_image = x.new_zeros(B, GATES[cell.kind] * H)
        for b in range(B):                               # each sentence alone: it starts at its end
            state = cell.zero_state(1, x)
            steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
            for t in steps:
                state = cell(x[b:b + 1, t], state, no_image[b:b + 1])
                out[b, t] = state[0][0]
        return out

    def forward(self, x, lengths):                       # [B, T, In] -> [B, T, 2H]
        return torch.cat([self.run(self.fwd, x, lengths, False), self.run(self.bwd, x, lengths, True)], 2)


class Retrieval(nn.Module):
    def __init__(self, config):
        super().__init__()
        r = config["retrieval"]
        self.embed = nn.Embedding(config["vocab_size"], r["embed"])
        self.rnn = nn.ModuleList([BidirectionalLayer(r["cell"], r["embed"] if l == 0 else 2 * r["hidden"],
                                                     r["hidden"]) for l in range(r["layers"])])
        self.text_proj = nn.Linear(2 * r["hidden"], r["dim"])
        self.image_proj = nn.Linear(config["dv"], r["dim"])

    def sentences(self, words, lengths):                 # words [B, T] (padded), lengths [B] -> [B, dim]
        x = self.embed(words)
        for layer in self.rnn:
            x = layer(x, lengths)
        mask = (torch.arange(words.shape[1])[None, :] < torch.tensor(lengths)[:, None]).to(x.dtype)
        pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(self.text_proj(pooled), dim=1)

    def images(self, v):                                 # v [B, Dv] -> [B, dim]
        return F.normalize(self.image_proj(v), dim=1)


class Familiarity(nn.Module):
    """SPEC §3c: the calibration images' mean f and W = L⁻¹ (lower triangular); not trained. f is
    the encoder's block means, or v in files without `familiar_features`."""
    def __init__(self, config):
        super().__init__()
        self.features = config.get("familiar_features", "image_vector")
        if self.features == "block_means":
            width, channels = 0, 3
            for item in config["layers"]:
                if item == "M":
                    width += channels
                else:
                    channels = int(item)
            width += channels if config["layers"][-1] != "M" else 0
        else:
            width = config["dv"]
        self.threshold = config["familiar_threshold"]
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("whiten", torch.zeros(width, width))

    def scores(self, f):                                 # f [B, D] -> [B]: (1/D) ‖W (f − mean)‖²
        z = (f - self.mean) @ torch.tril(self.whiten).T
        return (z * z).sum(1) / f.shape[1]

    def verdicts(self, encoder, images):                 # images [B, 3, S, S], normalised -> [B] bool
        f = encoder.block_means(images) if self.features == "block_means" else encoder(images)
        return self.scores(f) <= self.threshold


class CaptionModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.get("retrieval") is not None:
            self.retrieval = Retrieval(config)
        if config.get("familiar_threshold") is not None:
            self.familiarity = Familiarity(config)

    def forward(self, images, inputs):                         # -> logits [B, T, V]
        return self.decoder(self.encoder(images), inputs)

    @staticmethod
    def loss(logits, targets):
        """Mean cross-entropy over the non-<pad> targets of the batch."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=PAD)

    @torch.no_grad()
    def greedy(self, image, steps):
        """Encoder plus exactly `steps` greedy decoder steps for one image [1, 3, S, S]."""
        v = self.encoder(image)
        states, images = self.decoder.initial_state(v), self.decoder.image_terms(v)
        token = torch.full((1,), START, dtype=torch.long)
        words = []
        for t in range(steps):
            logits, states = self.decoder.step(token, states, images, first=(t == 0))
            logits[:, PAD] = float("-inf")
            logits[:, START] = float("-inf")
            token = logits.argmax(1)
            words.append(int(token))
        return words


# ---------------------------------------------------------------------------------------------------
# The model file (SPEC §3).

def default_config(**overrides):
    config = {"image_size": 64, "layers": [32, 32, "M", 64, 64, "M"], "dv": 256, "embed": 256,
              "hidden": 512, "cell": "lstm", "rnn_layers": 1, "vocab_size": 1000,
              "image_input": "every", "pool": "avg"}
    config.update(overrides)
    return config


def seeded_model(config, seed):
    """A CaptionModel seeded with `seed`, for fixtures: non-trivial values everywhere (the default
    init leaves nothing at zero; biases and peephole weights are made as large as the rest, so that
    their gradients are not tiny)."""
    torch.manual_seed(seed)
    model = CaptionModel(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1 or p.shape[0] == 3:
                p.uniform_(-0.5, 0.5)
    return model


def save_caption_model(path, model, vocab, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                       provenance=None):
    from safetensors.torch import save_file
    config = model.config
    assert len(vocab) == config["vocab_size"] and vocab[:4] == SPECIALS
    metadata = {
        "format": "caption-model",
        "version": "1",
        "config": json.dumps(config),
        "vocab": json.dumps(vocab),
        "preprocess": json.dumps({"image_size": config["image_size"], "mean": list(mean),
                                  "std": list(std)}),
    }
    if provenance is not None:
        metadata["provenance"] = json.dumps(provenance)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, path, metadata=metadata)


def load_caption_model(path):
    """Reads a `caption` model file into a CaptionModel with load_state_dict(strict=True)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta.get("format") == "caption-model" and meta.get("version") == "1", meta
    config = json.loads(meta["config"])
    model = CaptionModel(config)
    model.load_state_dict(load_file(path), strict=True)
    meta = dict(meta, config=config, vocab=json.loads(meta["vocab"]),
                preprocess=json.loads(meta["preprocess"]))
    return model, meta


def saved_and_reloaded(path, model, vocab, script, seed):
    """Writes a fixture model in our file format, reads it back (strict=True) and returns it in
    float64, with the F32 values the file holds."""
    save_caption_model(path, model, vocab, provenance={"script": script, "seed": seed})
    reloaded, meta = load_caption_model(path)
    assert meta["config"] == model.config
    return reloaded.double()


def fixture_images(count, seed):
    """`count` random normalised 8×8 images, F32 values in float64."""
    images = torch.randn(count, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return images.to(torch.float32).double()


def save_expected(path, tensors, script):
    """A parity fixture's batch and expected values, stored as F32 (they were computed in float64)."""
    from safetensors.torch import save_file
    tensors = {k: t.to(torch.float32).contiguous() for k, t in tensors.items()}
    save_file(tensors, path, metadata={"layout": f"see {script}"})


def make_fixtures(folder, configs, make, first_seed):
    """Runs `make(name, config, seed)` for each configuration, seeds first_seed, first_seed + 1, …"""
    os.makedirs(folder, exist_ok=True)
    torch.set_num_threads(1)
    for index, (name, config) in enumerate(configs.items()):
        make(name, config, seed=first_seed + index)


def self_check():
    """Checks the cells against PyTorch's own: LSTM, GRU and RNN equal nn.LSTMCell / nn.GRUCell /
    nn.RNNCell run on the concatenated input [x, v] with weight [W_ih | W_iv] (which places the image
    term exactly where SPEC §3 puts it, also in the GRU's n gate); a peephole cell with zero peephole
    weights is an LSTM; a coupled cell is checked against its formula written out for one unit."""
    torch.manual_seed(0)
    B, In, H, Dv = 3, 5, 4, 6
    x, v = torch.randn(B, In, dtype=torch.float64), torch.randn(B, Dv, dtype=torch.float64)
    h, c = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    for kind, ref_type in (("lstm", nn.LSTMCell), ("gru", nn.GRUCell), ("rnn", nn.RNNCell)):
        cell = Cell(kind, In, H, Dv).double()
        ref = ref_type(In + Dv, H).double()
        with torch.no_grad():
            ref.weight_ih.copy_(torch.cat([cell.weight_ih, cell.weight_iv], 1))
            ref.weight_hh.copy_(cell.weight_hh)
            ref.bias_ih.copy_(cell.bias_ih)
            ref.bias_hh.copy_(cell.bias_hh)
        xv = torch.cat([x, v], 1)
        state = (h, c) if kind == "lstm" else (h,)
        ours = cell(x, state, cell.image_term(v))
        theirs = ref(xv, (h, c)) if kind == "lstm" else (ref(xv, h),)
        for a, b in zip(ours, theirs):
            assert torch.allclose(a, b, atol=1e-12), (kind, (a - b).abs().max())
    lstm, peep = Cell("lstm", In, H, Dv).double(), Cell("peephole", In, H, Dv).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "weight_iv", "bias_ih", "bias_hh"):
            getattr(peep, name).copy_(getattr(lstm, name))
        peep.weight_peep.zero_()
    for a, b in zip(lstm(x, (h, c), lstm.image_term(v)), peep(x, (h, c), peep.image_term(v))):
        assert torch.allclose(a, b, atol=1e-12)
    coupled = Cell("coupled", In, H, Dv).double()
    with torch.no_grad():
        h1, c1 = coupled(x, (h, c), coupled.image_term(v))
        W = [coupled.weight_ih, coupled.weight_hh, coupled.weight_iv]
        for b in range(B):
            for j in range(H):
                pre = [float(W[0][g * H + j] @ x[b] + W[1][g * H + j] @ h[b] + W[2][g * H + j] @ v[b]
                             + coupled.bias_ih[g * H + j] + coupled.bias_hh[g * H + j]) for g in range(3)]
                f, g, o = 1 / (1 + math.exp(-pre[0])), math.tanh(pre[1]), 1 / (1 + math.exp(-pre[2]))
                cj = f * float(c[b, j]) + (1 - f) * g      # c = f c_prev + (1 - f) tanh(a_g)
                assert abs(cj - float(c1[b, j])) < 1e-12
                assert abs(o * math.tanh(cj) - float(h1[b, j])) < 1e-12
    return True


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 2:
        model, meta = load_caption_model(sys.argv[1])
        print(json.dumps(meta["config"]))
        for name, tensor in model.state_dict().items():
            print(f"{name:32s} {list(tensor.shape)}")
    else:
        print(__doc__)
