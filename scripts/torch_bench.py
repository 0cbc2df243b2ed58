#!/usr/bin/env python3
"""The PyTorch peer of `caption bench` (SPEC §7), on random data, with the same defaults and flags.

    python scripts/torch_bench.py [--threads 2] [--channels-last] [--cell lstm] ...

Prints, last, `train_images_per_s=<float>` (forward, backward and an Adam step over batches of
`--batch` images with captions of `--length` decoder steps; median over timed steps after warm-up)
and `describe_ms=<float>` (one image: encoder plus exactly `--length` greedy decoder steps; median).
With `--forward-only`, as `caption bench --forward-only`: the encoder's convolutions alone on batches
of `--batch` images under `torch.no_grad()`, as feature extraction runs them, printing
`forward_images_per_s=<float>` last.
The network is scripts/torch_reference.py's, eager mode.
"""
import argparse
import os
import statistics
import time

import torch

from torch_reference import CaptionModel, PAD, START


def parse_layers(text):
    """`32,32,M,64` -> [32, 32, "M", 64]"""
    return ["M" if item.strip() in ("M", "m") else int(item) for item in text.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--layers", default="32,32,M,64,64,M,128,128,M,256,256,M")
    p.add_argument("--dv", type=int, default=256)
    p.add_argument("--embed", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn", "peephole", "coupled"])
    p.add_argument("--rnn-layers", type=int, default=1)
    p.add_argument("--pool", default="avg", choices=["avg", "flatten"])
    p.add_argument("--image-input", default="every", choices=["every", "first"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for the encoder")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--describe-runs", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--forward-only", action="store_true", help="time the encoder's forward alone")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = {"image_size": args.image_size, "layers": parse_layers(args.layers), "dv": args.dv,
              "embed": args.embed, "hidden": args.hidden, "cell": args.cell,
              "rnn_layers": args.rnn_layers, "vocab_size": args.vocab,
              "image_input": args.image_input, "pool": args.pool}
    model = CaptionModel(config)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    # Random data: images [B, 3, S, S]; tokens <start> w1..w_{T-1} <end> (no padding), T = length.
    B, T, S = args.batch, args.length, args.image_size
    images = torch.randn(B, 3, S, S).contiguous(memory_format=memory_format)
    words = torch.randint(4, args.vocab, (B, T - 1))
    tokens = torch.cat([torch.full((B, 1), START), words, torch.full((B, 1), 2)], 1)  # [B, T+1]
    inputs, targets = tokens[:, :T], tokens[:, 1:]
    assert (targets != PAD).all()

    if args.forward_only:
        forward_only(model, images, args)
        return

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = CaptionModel.loss(model(images, inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    # Wall time is what the figures report; process CPU time (all threads) is printed too, because
    # on a busy shared machine CPU time per step with --threads 1 still estimates a quiet machine.
    times, cpu_times = [], []
    for step in range(args.warmup + args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = train_step()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if step >= args.warmup:
            times.append(elapsed)
            cpu_times.append(cpu)
    train_images_per_s = B / statistics.median(times)
    print(f"train: {args.steps} steps, median {statistics.median(times) * 1000:.1f} ms/step "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}), CPU time median "
          f"{statistics.median(cpu_times) * 1000:.1f} ms/step, last loss {loss:.3f}")

    model.eval()
    image = torch.randn(1, 3, S, S).contiguous(memory_format=memory_format)
    describe, describe_cpu = [], []
    for run in range(5 + args.describe_runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        words = model.greedy(image, T)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if run >= 5:
            describe.append(elapsed)
            describe_cpu.append(cpu)
    assert len(words) == T
    print(f"describe: {args.describe_runs} runs, min {min(describe) * 1000:.2f} ms, CPU time median "
          f"{statistics.median(describe_cpu) * 1000:.2f} ms")
    print(f"config: threads={args.threads} channels_last={args.channels_last} torch={torch.__version__} "
          f"load average {os.getloadavg()[0]:.2f} (figures are only meaningful on a quiet machine)")
    print(f"train_images_per_s={train_images_per_s:.1f}")
    print(f"describe_ms={statistics.median(describe) * 1000:.2f}")


def forward_only(model, images, args):
    """The convolutions' forward pass at batch `--batch` (the feature map, before pooling and fc)."""
    model.eval()
    times = []
    with torch.no_grad():
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            features = model.encoder.features(images)
            elapsed = time.perf_counter() - start
            if step >= args.warmup:
                times.append(elapsed)
    print(f"forward: {args.steps} batches of {args.batch}, median {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}), feature map {list(features.shape)}")
    print(f"config: threads={args.threads} channels_last={args.channels_last} torch={torch.__version__} "
          f"load average {os.getloadavg()[0]:.2f} (figures are only meaningful on a quiet machine)")
    print(f"forward_images_per_s={args.batch / statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
