#!/usr/bin/env python3
"""Scores a COCO-format results file with the official COCO caption evaluation (pycocoevalcap 1.2).

    python3 -m venv /work/venv-metrics && /work/venv-metrics/bin/pip install pycocoevalcap==1.2
    /work/venv-metrics/bin/python scripts/coco_official_eval.py --results R.json --references C.json

Runs BLEU-1..4, METEOR, ROUGE-L and CIDEr (CIDEr-D) after the official PTB tokenisation (Java
needed), over the images that have a result, as `caption score` does; `--spice` adds SPICE, which
downloads Stanford CoreNLP on first use and fails offline. Prints a table, or one JSON object with
`--json` (the keys of `caption score --json`, plus METEOR and SPICE).
"""
import argparse
import json
import sys

try:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
except ImportError:
    sys.exit("pycocoevalcap is not installed: pip install pycocoevalcap==1.2 (in a virtual environment)")


def load(results_path, references_path):
    with open(references_path) as f:
        references = json.load(f)
    with open(results_path) as f:
        results = json.load(f)
    gts = {}
    for image in references.get("images", []):
        gts[image["id"]] = []
    for annotation in references["annotations"]:
        gts.setdefault(annotation["image_id"], []).append({"caption": annotation["caption"]})
    res = {}
    for index, result in enumerate(results):
        image_id = result["image_id"]
        if image_id not in gts or not gts[image_id]:
            sys.exit("%s: entry %d: image_id %s is not in the references" % (results_path, index, image_id))
        if image_id in res:
            sys.exit("%s: entry %d: two results for image_id %s" % (results_path, index, image_id))
        res[image_id] = [{"caption": result["caption"]}]
    missing = len(gts) - len(res)
    if missing:
        print("warning: %d reference images have no result and were not scored" % missing, file=sys.stderr)
    return {i: gts[i] for i in res}, res


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="COCO results: [{image_id, caption}]")
    parser.add_argument("--references", required=True, help="COCO captions JSON")
    parser.add_argument("--spice", action="store_true", help="also run SPICE (needs network on first use)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    gts, res = load(args.results, args.references)
    tokenizer = PTBTokenizer()
    gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    scores = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        scores["BLEU-%d" % (n + 1)] = bleu[n]
    try:
        scores["METEOR"], _ = Meteor().compute_score(gts, res)
    except Exception as error:  # METEOR runs a Java jar; keep the other numbers if it fails
        print("METEOR failed: %s" % error, file=sys.stderr)
    scores["ROUGE-L"], _ = Rouge().compute_score(gts, res)
    scores["CIDEr-D"], _ = Cider().compute_score(gts, res)
    if args.spice:
        try:
            from pycocoevalcap.spice.spice import Spice
            scores["SPICE"], _ = Spice().compute_score(gts, res)
        except Exception as error:
            print("SPICE failed: %s" % error, file=sys.stderr)
    scores = {k: float(v) for k, v in scores.items()}
    if args.json:
        print(json.dumps(scores))
    else:
        print("images scored: %d" % len(res))
        for key, value in scores.items():
            print("%-8s %.4f" % (key, value))


if __name__ == "__main__":
    main()
