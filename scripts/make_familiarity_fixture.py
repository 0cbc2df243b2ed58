#!/usr/bin/env python3
"""PyTorch parity fixtures for the familiarity score (SPEC §3c), as make_retrieval_fixture.py does
for the retrieval part.

    python scripts/make_familiarity_fixture.py        (needs torch, safetensors, numpy)

For each layer list below it writes, under Tests/CaptionKitTests/Fixtures/parity/:

  familiarity_NAME.model.safetensors     a tiny random model with a `block_means` calibration (a
                                         random mean, a random lower-triangular whiten), loaded back
                                         by torch_reference (strict=True)
  familiarity_NAME.expected.safetensors  a fixed batch and what the SPEC computes on it, F32:
      batch.images          [B, 3, 8, 8]  normalised pixels
      expected.block_means  [B, D]        the encoder's block means
      expected.scores       [B]           (1/D) ‖whiten · (f − mean)‖²

computed in float64 from the float32 values stored in the file.
"""
import os

import torch
from torch_reference import seeded_model, SPECIALS, load_caption_model, save_caption_model, save_expected, \
    make_fixtures, saved_and_reloaded, fixture_images

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CaptionKitTests",
                      "Fixtures", "parity")

BASE = {"image_size": 8, "dv": 6, "embed": 5, "hidden": 7, "rnn_layers": 1, "vocab_size": 11,
        "image_input": "every", "pool": "flatten", "cell": "lstm", "familiar_threshold": 1.5,
        "familiar_features": "block_means"}
CONFIGS = {
    "conv_last": dict(BASE, layers=[4, "M", 8]),          # a pool, then the last conv: D = 4 + 8
    "pool_last": dict(BASE, layers=[3, 5, "M", 6, "M"]),  # two pools: D = 5 + 6
}
VOCAB = SPECIALS + ["a", "red", "blue", "circle", "square", "left", "of"]


def make(name, config, seed):
    model = seeded_model(config, seed)
    with torch.no_grad():
        width = model.familiarity.mean.shape[0]
        generator = torch.Generator().manual_seed(seed + 1)
        model.familiarity.mean.copy_(torch.randn(width, generator=generator))
        whiten = torch.tril(torch.randn(width, width, generator=generator)) / width ** 0.5
        whiten += torch.diag(torch.rand(width, generator=generator) + 0.5)
        model.familiarity.whiten.copy_(whiten)
    model64 = saved_and_reloaded(os.path.join(FOLDER, f"familiarity_{name}.model.safetensors"), model, VOCAB,
                                 "scripts/make_familiarity_fixture.py", seed)
    images = fixture_images(3, seed + 1000)
    with torch.no_grad():
        means = model64.encoder.block_means(images)
        scores = model64.familiarity.scores(means)
    save_expected(os.path.join(FOLDER, f"familiarity_{name}.expected.safetensors"),
                  {"batch.images": images, "expected.block_means": means, "expected.scores": scores},
                  "scripts/make_familiarity_fixture.py")
    print(f"familiarity_{name}: D {means.shape[1]}, scores {scores.tolist()}")


if __name__ == "__main__":
    make_fixtures(FOLDER, CONFIGS, make, first_seed=400)
