#!/usr/bin/env python3
"""PyTorch parity fixtures for the retrieval part (SPEC §3b), as make_parity_fixture.py does for the
captioner.

    python scripts/make_retrieval_fixture.py        (needs torch, safetensors, numpy)

For each configuration below it writes, under Tests/CaptionKitTests/Fixtures/parity/:

  retrieval_NAME.model.safetensors     a tiny random model with a retrieval part in OUR model file
                                       format, loaded back by torch_reference (strict=True)
  retrieval_NAME.expected.safetensors  a fixed batch and what the SPEC network computes on it, F32:
      batch.images       [B, 3, 8, 8]  normalised pixels
      batch.words        [N, T]        word ids of N sentences, padded with 0 (ids as floats)
      batch.lengths      [N]           each sentence's word count
      expected.images    [B, dim]      the images' unit vectors, normalise(image_proj(encoder(images)))
      expected.sentences [N, dim]      the sentences' unit vectors

computed in float64 from the float32 weights stored in the file.
"""
import os

import torch
from torch_reference import CaptionModel, seeded_model, SPECIALS, load_caption_model, save_caption_model, \
    save_expected, make_fixtures, \
    saved_and_reloaded, fixture_images

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CaptionKitTests",
                      "Fixtures", "parity")

BASE = {"image_size": 8, "layers": [4, "M", 8], "dv": 6, "embed": 5, "hidden": 7,
        "rnn_layers": 1, "vocab_size": 11, "image_input": "every", "pool": "avg", "cell": "lstm"}
CONFIGS = {
    "gru": dict(BASE, retrieval={"cell": "gru", "embed": 4, "hidden": 3, "layers": 1, "dim": 5}),
    "lstm2": dict(BASE, retrieval={"cell": "lstm", "embed": 4, "hidden": 3, "layers": 2, "dim": 5}),
    "peephole2": dict(BASE, retrieval={"cell": "peephole", "embed": 4, "hidden": 3, "layers": 2, "dim": 5}),
}
VOCAB = SPECIALS + ["a", "red", "blue", "circle", "square", "left", "of"]
WORDS = [[4, 5, 7, 9], [6, 3, 8, 0], [10, 0, 0, 0]]     # 4, 3 (one <unk>) and 1 words
LENGTHS = [4, 3, 1]


def make(name, config, seed):
    model = seeded_model(config, seed)
    model64 = saved_and_reloaded(os.path.join(FOLDER, f"retrieval_{name}.model.safetensors"), model, VOCAB,
                                 "scripts/make_retrieval_fixture.py", seed)
    images = fixture_images(2, seed + 1000)
    words = torch.tensor(WORDS, dtype=torch.long)
    with torch.no_grad():
        u = model64.retrieval.images(model64.encoder(images))
        s = model64.retrieval.sentences(words, LENGTHS)
    out = {
        "batch.images": images, "batch.words": words.double(),
        "batch.lengths": torch.tensor(LENGTHS, dtype=torch.float64),
        "expected.images": u, "expected.sentences": s,
    }
    save_expected(os.path.join(FOLDER, f"retrieval_{name}.expected.safetensors"), out,
                  "scripts/make_retrieval_fixture.py")
    print(f"retrieval_{name}: cosines {(u @ s.t()).flatten().tolist()}")


if __name__ == "__main__":
    make_fixtures(FOLDER, CONFIGS, make, first_seed=300)
