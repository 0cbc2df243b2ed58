#!/usr/bin/env python3
"""Generates the metric and tokenizer parity fixtures under Tests/CaptionKitTests/Fixtures/metrics/.

Runs the official COCO caption evaluation code (pycocoevalcap 1.2 from PyPI; its PTB tokenizer needs
Java) on fixed inputs and records what it returns, so the Swift tests need neither Python nor Java.

    python3 -m venv /work/venv-metrics && /work/venv-metrics/bin/pip install pycocoevalcap==1.2
    /work/venv-metrics/bin/python scripts/make_metric_fixtures.py

Outputs (all JSON):
  tokenizer.json            [{"text": RAW, "tokens": [...]}]  PTBTokenizer + punctuation removal
  set-<name>.json           {"results": [{"image_id", "caption"}], "references": COCO captions JSON,
                             "tokens": {"candidates": {id: [...]}, "references": {id: [[...]]}},
                             "expected": {"BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr-D"},
                             "per_image": {id: {"CIDEr-D", "ROUGE-L", "BLEU-4"}}}
"""
import json
import os
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CaptionKitTests", "Fixtures",
                   "metrics")


def tokenize_many(texts):
    """The official tokenizer on a list of strings, as lists of tokens.

    The PTB lexer sees the whole file, so a caption's last token can depend on the next line (`c.`
    before a capitalised line is `c .`). Each string is therefore followed by a line "A", the usual
    start of the next caption in a COCO file; the Swift tokenizer assumes the same at the end of a caption.
    """
    captions = {}
    for i, t in enumerate(texts):
        captions[2 * i] = [{"caption": t}]
        captions[2 * i + 1] = [{"caption": "A"}]
    out = PTBTokenizer().tokenize(captions)
    assert len(out) == 2 * len(texts), "tokenizer lost lines"
    return [out[2 * i][0].split(" ") if out[2 * i][0] != "" else [] for i in range(len(texts))]


# ---------------------------------------------------------------------------------------------------
# Tokenizer fixture

HAND = [
    "A man's dog can't run.", "I won't go, don't ask.", "It isn't here; they're gone.",
    "We've seen it, you'll see, he'd know, I'm sure.", "The dogs' bowls are empty.", "You cannot gonna.",
    "At two o'clock in the '90s.", "A well-kept t-shirt on a 3-year-old.", "Temperature -5 today",
    "A dog- and a cat", "x--y", "a -- b", "a --- b", "a – b — c", "The man sits. A dog runs.",
    "Wait.. what...", "Mr. Smith and Dr. Who on St. James", "Meet at 3 a.m. in the U.S.", "apples, etc.",
    "Inner 3.5 and .5 and dog.cat", "dog,cat and a;b and c:d", "1,000 people at 10:30", "Really?! No!! Why??",
    "Is it? Yes!", "He said \"hello\" to her.", "“Curly quotes” and ‘single ones’", "It’s John’s hat",
    "$5.50 for 50% off #1", "£3 and €4", "cats & dogs / birds * fish < x > y", "A   dog\twith  tabs",
    "", "   ", ".", "...", "?!", "-", "--", "' '", "\"\"", "(a) [b] {c}", "A (RED) car", "COLOUR behaviour",
    "The U.S.A. team", "A.M. or P.M.", "e.g. this i.e. that", "vs. them", "Jan. 5 and Feb. 6",
    "Corp. Inc. Ltd. Co.", "Ph.D. students", "Jr. and Sr.", "a b c.", "A DOG RUNNING!", "word.",
    "word. . .", "1/2 cup", "½ cup", "1 1/2 cups", "3/4", "12-12-2012", "555-123-4567", "(555) 123-4567",
    "www.example.com", "http://example.com/a?b=c", "mail me@example.com", "@user #hashtag",
    "a_b c__d", "***", "a*b", "a/b/c", "rock'n'roll", "'tis the season", "y'all", "ma'am", "o'neill's",
    "Shi'ite", "don'ts", "the 80's", "'80s music", "'em", "'cause", "the cat's.", "James' book",
    "James's book", "Ahmad’s car", "naïve café", "Zoë's résumé", "straße", "İstanbul", "ÉCOLE",
    "中文 字", "emoji 😀 here", "tab\tseparated\tvalues", "number 3,5 and 3.5.1", "+5 and -5.5",
    "a.b.c", "end with comma,", "semicolon;", "colon:", "exclaim!", "question?", "A man riding a horse .",
    "two dogs play in the grass .", "A person with a kite", "A giraffe standing next to a tree .",
    "A couple of people that are standing in the snow .", "there is a cat that is sitting on the bed",
    "a man is cutting a cake with a knife", "A baseball player swinging a bat at a ball.",
    "An older man's shirt.", "The bus's door", "I'd've gone", "it's 5 o'clock somewhere",
    "can't won't shan't ain't", "CAN'T", "Don't", "DON'T", "wouldn't've", "gimme", "gotta", "wanna",
    "lemme", "Mrs. Jones", "Ms. Lee", "Prof. X", "Gen. Lee", "Sgt. Pepper", "Mt. Fuji", "St. Louis, Mo.",
    "Calif. and Tex.", "No. 5", "approx. 5", "Fig. 3", "the end .", "a dog ...", "a dog…", "well — maybe",
    "self-driving car", "x-ray", "e-mail", "co-op", "twenty-one", "mid-1990s", "1990s", "1990's",
    "A+ grade", "C++ code", "AT&T and S&P 500", "R&B", "Q&A", "a.k.a. Joe", "Washington, D.C.",
    "D.C. area", "U.K.", "N.Y.C.", "5 p.m.", "5pm", "5:30pm", "#5", "5#", "100°F", "2×3", "~approx",
    "^caret", "a|b", "back\\slash", "a=b", "x+y", "<b>bold</b>", "&amp; entity", "&lt;tag&gt;",
    "«French»", "‹single›", "„low“", "a · b", "bullet • point", "§ 5", "© 2020", "™", "a…b", ". . .",
    "wait . . . what", "end.\"", "\"Quote.\"", "(parenthetical.)", "[bracket!]", "it's.", "don't.",
    "Yes, sir.", "NO.", "x.", "A.", "I.", "a dog. a cat.", "one-word", "Hello", "HELLO WORLD",
]

PIECES = [
    "a", "A", "dog", "Dog", "man's", "can't", "don't", "won't", "isn't", "they're", "we've", "I'm", "he'd",
    "she'll", "dogs'", "cannot", "gonna", "o'clock", "'90s", "well-kept", "t-shirt", "3-year-old", "-5",
    "dog-", "x--y", "-", "--", "---", "–", "—", ".", "..", "...", "sits.", "Mr.", "Dr.", "St.", "a.m.",
    "U.S.", "etc.", "3.5", ".5", "dog.cat", ",", ";", ":", "dog,cat", "1,000", "10:30", "?", "!", "?!",
    "!!", "??", "\"", "'", "“", "”", "‘", "’", "it’s", "$5.50", "50%", "#1", "£3", "€4", "&", "/", "*",
    "<", ">", "(", ")", "[", "]", "{", "}", "red", "BLUE", "Green", "tennis", "racket", "on", "the", "of",
    "with", "two", "people", "standing", "next", "to", "a", "giraffe", "snow", "1", "12", "2012", "x",
    "naïve", "café", "hat", "kid's", "kids'", "James'", "ice-cream", "self-driving", "e.g.", "i.e.",
]


MORE_PIECES = PIECES + [
    "o'neill", "let's", "who's", "that's", "there's", "what's", "ain't", "shouldn't", "couldn't", "I've",
    "you'd", "NYC", "LA", "p.m.", "5pm", "4:30", "2:1", "1st", "2nd", "3rd", "20th", "1990s", "$20", "20$",
    "USD", "km/h", "50/50", "w/", "w/o", "&amp;", "A/C", "T.V.", "tv", "T-Rex", "X-ray", "e-mail", "B&W",
    "B/W", "...", ":)", ";)", "!?", "?!?", "Mr", "Jr.", "Inc.", "vs", "vs.", "no.", "No.", "Co.", "Ave.", "St",
    "Dr", "an", "is", "are", "The", "Two", "man", "woman", "women's", "children's", "people's", "bus",
    "street", "ollie", "skateboarder", "mid-air", "fire-hydrant", "hot-dog", "#", "@", "%", "+", "=", "~",
    "|", "^", "°", "™", "é", "ñ", "ü", "Ü", "ß", "…", "•", "·", "½",
]


def random_strings(rng, pieces, count, max_parts, glues):
    strings = []
    for _ in range(count):
        k = rng.randint(1, max_parts)
        parts = [rng.choice(pieces) for _ in range(k)]
        s = parts[0]
        for p in parts[1:]:
            s += rng.choice(glues) + p
        strings.append(s)
    return strings


def tokenizer_strings():
    rng = random.Random(20240611)
    strings = list(HAND)
    strings += random_strings(rng, PIECES, 260, 9, [" ", " ", " ", " ", "", "  "])
    # A second batch, written after the tokenizer was: it measured how well the rules generalise.
    rng = random.Random(99)
    strings += random_strings(rng, MORE_PIECES, 1500, 10, [" ", " ", " ", " ", " ", "", "  "])
    strings += [sentence(rng) for _ in range(400)]
    # No '\r' or other line breaks: the official code would split them into extra lines.
    return [s.replace("\r", " ") for s in strings]


# ---------------------------------------------------------------------------------------------------
# Metric sets

def natural_set():
    refs = {
        1: ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean.",
            "A person on a surfboard riding a wave.", "Surfer riding a big wave, looking happy!",
            "A man surfs the waves at the beach."],
        2: ["Two dogs playing with a frisbee in the park.", "Two dogs are chasing a red frisbee.",
            "Dogs run across the grass after a toy.", "A pair of dogs play in a grassy field."],
        3: ["A plate of food with broccoli and rice.", "Rice, broccoli, and chicken on a white plate.",
            "A healthy meal: rice & vegetables.", "There's a plate with food on it.",
            "Broccoli sits next to rice on a dish."],
        5: ["A man's red car parked on the street.", "The red car is parked by a curb.",
            "A small red car (a hatchback) on a city street.", "Red car, parked; nobody's in it."],
        7: ["A giraffe standing next to a tall tree.", "The giraffe eats leaves from a tree.",
            "A tall giraffe near some trees at the zoo.", "Giraffe standing in an enclosure, eating."],
        11: ["A baseball player swinging a bat at a ball.", "The batter swings at the pitch.",
             "A batter, catcher and umpire during a game.", "Baseball player hitting a ball."],
        13: ["A cat sleeping on a laptop keyboard.", "The cat is lying on a computer.",
             "A grey cat naps on top of a laptop.", "Cat asleep on the keys of a notebook computer."],
        17: ["People walking down a snowy street with umbrellas.", "Pedestrians with umbrellas in the snow.",
             "Several people walk in the snow, holding umbrellas.", "A snowy city street with people."],
    }
    cands = {1: "A man riding a wave on a surfboard.", 2: "Two dogs play with a Frisbee in the grass!",
             3: "A plate of rice and broccoli.", 5: "A red car parked on the side of the street.",
             7: "A giraffe standing next to a tree.", 11: "A baseball player swinging a bat.",
             13: "A cat laying on top of a laptop computer.", 17: "A group of people walking in the snow."}
    return cands, refs


def edge_set():
    refs = {
        1: ["a dog runs on the beach", "a dog is running along the sand", "the dog runs by the sea"],
        2: ["a cat on a mat"],
        3: ["a bird flies over the water", "birds flying", "a bird in the sky above a lake",
            "a seagull flies", "a bird spreads its wings", "one bird over water", "a flying bird"],
        4: ["a red bus on the road", "a bus drives down a street"],
        5: ["a man holding an umbrella", "a man with an umbrella in the rain", "someone holds an umbrella"],
        6: ["a horse in a field", "a brown horse grazing", "horse standing on grass"],
        7: ["a kitchen with a stove", "a small kitchen", "kitchen with white cabinets and a stove"],
        8: ["a train at a station", "a train pulling into the station", "a yellow train"],
        9: ["a child eats a sandwich", "a kid eating lunch", "a little boy eating a sandwich"],
        10: ["...", "a sign on a pole", "a stop sign"],
        12: ["a plane in the sky", "an airplane flying"],
        14: ["two zebras standing together", "zebras in a field"],
        15: ["one and 1 1/2 cups of flour", "flour, 1/2 cup"],
    }
    cands = {
        1: "dog",                                   # one word
        2: "a cat on a mat",                        # identical to the single reference
        3: "a bird a bird a bird a bird",           # repeated words
        4: "",                                      # empty
        5: "...",                                   # punctuation only: empty after tokenisation
        6: "horse horse horse",
        7: "a small kitchen",                       # identical to one of several references
        8: "a train at a station at a station at a station at a station",  # long, repetitive
        9: "The kid's eating a sandwich, isn't he?",
        10: "a stop sign",
        12: "plane",
        14: "two zebras standing together in a field near some trees on a sunny day",
        15: "1 1/2 cups of flour",                  # a token with a non-breaking space inside
    }
    return cands, refs


SUBJECTS = ["a man", "a woman", "a dog", "two dogs", "a cat", "a child", "a group of people", "a horse",
            "a bird", "an elephant", "a giraffe", "three sheep", "a surfer", "a skier", "a boy", "a girl"]
VERBS = ["standing", "sitting", "running", "walking", "playing", "lying", "eating", "jumping", "riding",
         "looking"]
PREPS = ["on", "in", "near", "next to", "under", "behind", "in front of", "on top of", "beside"]
OBJECTS = ["a table", "the grass", "a bench", "the beach", "a field", "the snow", "a street", "a tree",
           "the water", "a couch", "a bed", "a wall", "a fence", "the road", "a building", "a car"]
EXTRAS = ["", "", "", " with a frisbee", " with a red ball", " at night", " on a sunny day",
          " while it rains", ", looking happy", " and smiling"]


def sentence(rng):
    s = "%s %s %s %s%s" % (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(PREPS), rng.choice(OBJECTS),
                          rng.choice(EXTRAS))
    if rng.random() < 0.5:
        s = s[0].upper() + s[1:]
    if rng.random() < 0.6:
        s += rng.choice([".", ".", " .", "!"])
    return s


def large_set(count=500, seed=7):
    rng = random.Random(seed)
    refs, cands = {}, {}
    for i in range(count):
        image_id = 1000 + 3 * i
        refs[image_id] = [sentence(rng) for _ in range(rng.randint(1, 6))]
        roll = rng.random()
        if roll < 0.1:
            cands[image_id] = rng.choice(refs[image_id])
        elif roll < 0.15:
            cands[image_id] = rng.choice(VERBS)
        else:
            cands[image_id] = sentence(rng)
    return cands, refs


def score_set(name, cands, refs, unscored_refs=None):
    """Runs the official pipeline: tokenise, then BLEU, ROUGE-L, CIDEr(-D) over the result images."""
    ids = sorted(cands)
    gts = {i: [{"caption": c} for c in refs[i]] for i in ids}
    res = {i: [{"caption": cands[i]}] for i in ids}
    tok = PTBTokenizer()
    gts_t = tok.tokenize(gts)
    res_t = tok.tokenize(res)
    bleu, bleu_per = Bleu(4).compute_score(gts_t, res_t, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts_t, res_t)
    cider, cider_per = Cider().compute_score(gts_t, res_t)
    split = lambda s: s.split(" ") if s != "" else []
    all_refs = dict(refs)
    all_refs.update(unscored_refs or {})
    images = [{"id": i, "file_name": "%d.jpg" % i} for i in sorted(all_refs)]
    annotations = []
    for i in sorted(all_refs):
        for c in all_refs[i]:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "caption": c})
    fixture = {
        "results": [{"image_id": i, "caption": cands[i]} for i in ids],
        "references": {"images": images, "annotations": annotations},
        "tokens": {"candidates": {str(i): split(res_t[i][0]) for i in ids},
                   "references": {str(i): [split(r) for r in gts_t[i]] for i in ids}},
        "expected": {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3],
                     "ROUGE-L": float(rouge), "CIDEr-D": float(cider)},
        "per_image": {str(i): {"CIDEr-D": float(cider_per[k]), "ROUGE-L": float(rouge_per[k]),
                               "BLEU-4": float(bleu_per[3][k])} for k, i in enumerate(ids)},
    }
    with open(os.path.join(OUT, "set-%s.json" % name), "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
    print(name, fixture["expected"], file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = tokenizer_strings()
    tokens = tokenize_many(texts)
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump([{"text": t, "tokens": k} for t, k in zip(texts, tokens)], f, indent=1, ensure_ascii=False)
    cands, refs = natural_set()
    # Two reference images without a result: left out of scoring (and of CIDEr's document frequencies).
    score_set("natural", cands, refs, unscored_refs={99: ["A lonely reference."], 98: ["Another one here."]})
    score_set("edge", *edge_set())
    score_set("large", *large_set())


if __name__ == "__main__":
    main()
