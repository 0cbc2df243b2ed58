#!/usr/bin/env python3
"""The ONNX Runtime peer of `caption bench`'s describe (SPEC §7): the PyTorch reference network
(scripts/torch_reference.py) exported to ONNX as two graphs, the encoder with the decoder's image
terms (computed once per caption) and one decoder step, run by ONNX Runtime's CPU provider.

    python scripts/onnx_describe.py [--preset default|default-128|vgg16-224] [--threads 2]

Times what `caption bench` times as describe: one image, encoder plus exactly `--length` greedy
decoder steps (the argmax between steps in NumPy, <pad> and <start> excluded); the median over
`--runs` after a warm-up. Prints PyTorch eager's time for the same network beside it, and, last,
`onnxruntime_describe_ms=<float>` and `pytorch_describe_ms=<float>`. Random weights (seeded): the
time does not depend on them. scripts/onnx_peer.sh sets up the packages and runs `caption bench`
back to back with it.
"""
import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import onnxruntime
import torch

from torch_reference import CaptionModel, PAD, START

PRESETS = {  # SPEC §7's `caption bench --preset` configurations
    "default": (64, "32,32,M,64,64,M,128,128,M,256,256,M"),
    "default-128": (128, "32,32,M,64,64,M,128,128,M,256,256,M"),
    "vgg11-224": (224, "64,M,128,M,256,256,M,512,512,M,512,512,M"),
    "vgg16-224": (224, "64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M"),
}


class EncoderWithImageTerms(torch.nn.Module):
    """image [1, 3, S, S] -> each recurrent layer's image term W_iv v [1, G*H]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return tuple(self.model.decoder.image_terms(self.model.encoder(image)))


class DecoderStep(torch.nn.Module):
    """token [1], the flat state (h, c per layer) and the image terms -> logits [1, V], new state."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.layers = len(model.decoder.rnn)
        self.per_layer = len(model.decoder.rnn[0].zero_state(1, torch.zeros(1)))

    def forward(self, token, *flat):
        n = self.layers * self.per_layer
        states = [tuple(flat[i * self.per_layer:(i + 1) * self.per_layer]) for i in range(self.layers)]
        logits, new_states = self.model.decoder.step(token, states, list(flat[n:]), first=False)
        return (logits,) + tuple(t for state in new_states for t in state)


def median_ms(run, runs, warmup):
    times = []
    for index in range(warmup + runs):
        start = time.perf_counter()
        run()
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--dv", type=int, default=256)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    size, layers = PRESETS[args.preset]
    config = {"image_size": size, "layers": ["M" if x == "M" else int(x) for x in layers.split(",")],
              "dv": args.dv, "embed": args.embed, "hidden": args.hidden, "cell": "lstm",
              "rnn_layers": 1, "vocab_size": args.vocab, "image_input": "every", "pool": "avg"}
    model = CaptionModel(config).eval()
    image = torch.randn(1, 3, size, size)
    state = [t for s in model.decoder.initial_state(torch.zeros(1, args.dv)) for t in s]
    terms = EncoderWithImageTerms(model)(image)

    with tempfile.TemporaryDirectory() as folder:
        encoder_path = os.path.join(folder, "encoder.onnx")
        step_path = os.path.join(folder, "step.onnx")
        token = torch.full((1,), START, dtype=torch.long)
        with torch.no_grad():
            torch.onnx.export(EncoderWithImageTerms(model), (image,), encoder_path, dynamo=False,
                              input_names=["image"], opset_version=17)
            torch.onnx.export(DecoderStep(model), (token, *state, *terms), step_path, dynamo=False,
                              input_names=["token"] + [f"in{i}" for i in range(len(state) + len(terms))],
                              opset_version=17)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        encoder = onnxruntime.InferenceSession(encoder_path, options, providers=providers)
        step = onnxruntime.InferenceSession(step_path, options, providers=providers)

    step_inputs = [i.name for i in step.get_inputs()]
    image_np = image.numpy()
    zero_state = [t.numpy() for t in state]

    def describe_onnx():
        image_terms = encoder.run(None, {"image": image_np})
        flat = list(zero_state)
        token = np.array([START], dtype=np.int64)
        words = []
        for _ in range(args.length):
            outputs = step.run(None, dict(zip(step_inputs, [token] + flat + image_terms)))
            logits, flat = outputs[0], outputs[1:]
            logits[:, PAD] = -np.inf
            logits[:, START] = -np.inf
            token = logits.argmax(1).astype(np.int64)
            words.append(int(token[0]))
        return words

    # The two engines must decode the same words from the same weights before either is timed.
    ours, theirs = describe_onnx(), model.greedy(image, args.length)
    if ours != theirs:
        raise SystemExit(f"ONNX Runtime decoded {ours}, PyTorch {theirs}")

    onnx_ms = median_ms(describe_onnx, args.runs, args.warmup)
    torch_ms = median_ms(lambda: model.greedy(image, args.length), args.runs, args.warmup)
    print(f"describe: preset {args.preset}, threads {args.threads}, onnxruntime "
          f"{onnxruntime.__version__}, torch {torch.__version__}")
    print(f"onnxruntime_describe_ms={onnx_ms:.2f}")
    print(f"pytorch_describe_ms={torch_ms:.2f}")


if __name__ == "__main__":
    main()
