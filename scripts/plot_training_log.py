#!/usr/bin/env python3
"""Plots a training log (SPEC §8's JSON lines: loss and validation CIDEr-D against step).

    python3 scripts/plot_training_log.py runs/shapes.log.jsonl runs/shapes-curves.svg

Writes SVG with no dependencies; writes PNG (or anything matplotlib can) when the output name ends
in .png and matplotlib is installed.
"""
import json
import os
import sys
import tempfile


def read_log(path):
    loss, cider = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}: line {number}: not JSON ({e})")
            if "loss" in row:
                loss.append((row["step"], row["loss"]))
            if "val_CIDEr-D" in row:
                cider.append((row["step"], row["val_CIDEr-D"]))
    if not loss:
        sys.exit(f"{path}: no loss lines")
    return loss, cider


def svg_panel(points, title, color, x_offset, width=420, height=260, margin=44):
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(min(ys), 0), max(max(ys), min(ys) + 1e-9)
    px = lambda x: x_offset + margin + (x - x0) / (x1 - x0) * (width - 2 * margin)
    py = lambda y: height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin)
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    return f"""<text x="{x_offset + margin}" y="20" font-size="14">{title}</text>
<line x1="{x_offset + margin}" y1="{height - margin}" x2="{x_offset + width - margin}" y2="{height - margin}" stroke="#999"/>
<line x1="{x_offset + margin}" y1="{margin}" x2="{x_offset + margin}" y2="{height - margin}" stroke="#999"/>
<text x="{x_offset + 2}" y="{py(y1) + 4:.1f}" font-size="11">{y1:.3g}</text>
<text x="{x_offset + 2}" y="{py(y0):.1f}" font-size="11">{y0:.3g}</text>
<text x="{x_offset + margin}" y="{height - margin + 16}" font-size="11">step {x0:g}</text>
<text x="{x_offset + width - margin - 60}" y="{height - margin + 16}" font-size="11">step {x1:g}</text>
<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{line}"/>
"""


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    log_path, out_path = sys.argv[1], sys.argv[2]
    loss, cider = read_log(log_path)
    if not out_path.endswith(".svg"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2 if cider else 1, figsize=(10 if cider else 5, 3.5), squeeze=False)
        axes[0][0].plot(*zip(*loss))
        axes[0][0].set_title("training loss")
        axes[0][0].set_xlabel("step")
        if cider:
            axes[0][1].plot(*zip(*cider), color="tab:red", marker="o")
            axes[0][1].set_title("validation CIDEr-D")
            axes[0][1].set_xlabel("step")
        fig.tight_layout()
        folder = os.path.dirname(os.path.abspath(out_path))
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=os.path.splitext(out_path)[1])
        os.close(fd)
        fig.savefig(tmp, dpi=100)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
        return
    panels = svg_panel(loss, "training loss", "#1f77b4", 0)
    if cider:
        panels += svg_panel(cider, "validation CIDEr-D", "#d62728", 440)
    width = 880 if cider else 440
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="260" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n{panels}</svg>\n'
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".svg")
    with os.fdopen(fd, "w") as f:
        f.write(svg)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
