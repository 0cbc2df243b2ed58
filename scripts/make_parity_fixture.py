#!/usr/bin/env python3
"""PyTorch parity fixtures, in the way llm.c's test_gpt2 checks against a PyTorch dump.

    python scripts/make_parity_fixture.py        (needs torch, safetensors, numpy)

For each configuration below it writes, under Tests/CaptionKitTests/Fixtures/parity/:

  NAME.model.safetensors     a tiny random model in OUR model file format (SPEC §3 tensors and
                             metadata: format, version, config, vocab, preprocess), readable by
                             ModelFile.load and by torch_reference.load_caption_model (strict=True)
  NAME.expected.safetensors  a fixed batch and what the SPEC network computes on it, all F32:
      batch.images    [B, 3, 8, 8]   normalised pixels (what the encoder sees)
      batch.tokens    [B, T+1]       <start> w1..wn <end>, then <pad>=0 (token ids as floats)
      batch.inputs    [B, T]         batch.tokens[:, :T]  (decoder input at step t)
      batch.targets   [B, T]         batch.tokens[:, 1:]  (target at step t; 0 = <pad>, no loss)
      expected.v      [B, Dv]        encoder output
      expected.logits [B, T, V]      decoder logits at every step, padded steps included
      expected.loss   [1]            mean cross-entropy over the non-<pad> targets
      grad.images     [B, 3, 8, 8]   d loss / d batch.images
      grad.<tensor>   shape of <tensor>, d loss / d each model tensor (every name in the model file)

The forward and backward run in float64 from the float32 weights and images stored in the files,
then are rounded to float32, so the expected values are exact to float32 precision.
Rerunning gives the same tensors and metadata; only the order of the metadata keys inside the
header may change (the Python library writes them from a hash map).
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from torch_reference import CaptionModel, seeded_model, SPECIALS, load_caption_model, save_caption_model, self_check

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CaptionKitTests",
                      "Fixtures", "parity")

BASE = {"image_size": 8, "layers": [4, "M", 8], "dv": 6, "embed": 5, "hidden": 7,
        "rnn_layers": 1, "vocab_size": 11, "image_input": "every", "pool": "avg"}
CONFIGS = {
    "lstm": dict(BASE, cell="lstm"),
    "gru": dict(BASE, cell="gru"),
    "rnn": dict(BASE, cell="rnn"),
    "peephole": dict(BASE, cell="peephole"),
    "coupled": dict(BASE, cell="coupled"),
    "lstm2_first_flatten": dict(BASE, cell="lstm", rnn_layers=2, image_input="first", pool="flatten"),
}
VOCAB = SPECIALS + ["a", "red", "blue", "circle", "square", "left", "of"]

# Two captions: 4 words and 3 words (one of them <unk>), so T = 5 and row 1 ends with one <pad> target.
TOKENS = [[1, 4, 5, 7, 9, 2],
          [1, 6, 3, 8, 2, 0]]


def make(name, config, seed):
    model = seeded_model(config, seed)
    model_path = os.path.join(FOLDER, f"{name}.model.safetensors")
    save_caption_model(model_path, model, VOCAB,
                       provenance={"script": "scripts/make_parity_fixture.py", "seed": seed})

    # The same model from the file, in float64.
    model64, meta = load_caption_model(model_path)
    assert meta["config"] == config
    model64 = model64.double()
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed + 1000))
    images = images.to(torch.float32).double().requires_grad_(True)
    tokens = torch.tensor(TOKENS, dtype=torch.long)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    v = model64.encoder(images)
    logits = model64.decoder(v, inputs)
    loss = CaptionModel.loss(logits, targets)
    loss.backward()

    # Float32 check of the round trip: the file's weights in float32 give the same logits.
    model32, _ = load_caption_model(model_path)
    with torch.no_grad():
        logits32 = model32(images.detach().float(), inputs)
    assert torch.allclose(logits32.double(), logits, atol=1e-5), (logits32.double() - logits).abs().max()

    out = {
        "batch.images": images.detach(),
        "batch.tokens": tokens.double(),
        "batch.inputs": inputs.double(),
        "batch.targets": targets.double(),
        "expected.v": v.detach(),
        "expected.logits": logits.detach(),
        "expected.loss": loss.detach().reshape(1),
        "grad.images": images.grad,
    }
    for pname, p in model64.named_parameters():
        out["grad." + pname] = p.grad
    names = set(model64.state_dict().keys())
    assert names == {k[5:] for k in out if k.startswith("grad.") and k != "grad.images"}
    out = {k: t.to(torch.float32).contiguous() for k, t in out.items()}
    expected_path = os.path.join(FOLDER, f"{name}.expected.safetensors")
    save_file(out, expected_path, metadata={
        "config": name, "layout": "see scripts/make_parity_fixture.py",
        "non_pad_targets": str(int((targets != 0).sum()))})
    print(f"{name:22s} loss {loss.item():.6f}  |grad| max "
          f"{max(float(t.abs().max()) for k, t in out.items() if k.startswith('grad.')):.4f}  "
          f"-> {os.path.basename(model_path)}, {os.path.basename(expected_path)}")


if __name__ == "__main__":
    os.makedirs(FOLDER, exist_ok=True)
    torch.set_num_threads(1)
    assert self_check()  # the reference cells agree with PyTorch's LSTMCell, GRUCell, RNNCell
    for index, (name, config) in enumerate(CONFIGS.items()):
        make(name, config, seed=100 + index)
