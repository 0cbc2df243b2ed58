#!/usr/bin/env python3
"""Writes the small dataset fixtures of Tests/CaptionKitTests/Fixtures/data/ in the real layouts of
dataset_flickr8k.json / dataset_coco.json (Karpathy splits), captions_train2014.json (COCO),
Flickr8k.token.txt with Flickr_8k.*Images.txt, and a dataset directory with captions.json.
Captions are made up. Run from the package root: python3 scripts/make_data_fixtures.py"""
import json
import os

OUT = "Tests/CaptionKitTests/Fixtures/data"


def write(path, text):
    full = os.path.join(OUT, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(text)


def karpathy_sentence(raw, imgid, sentid):
    # Karpathy's tokens: lowercase, punctuation stripped (ignored by the reader; SPEC §6).
    tokens = [w.strip(".,").lower() for w in raw.split() if w.strip(".,")]
    return {"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid}


# dataset_flickr8k.json layout: no filepath, no cocoid; imgid; splits train/val/test.
flickr_captions = [
    ("2513260012_03d33305cf.jpg", "train", ["A black dog runs across the grass.", "A dog is running on a lawn ."]),
    ("2903617548_d3e38d7f88.jpg", "train", ["Two children play in the sand at the beach.", "kids playing on a beach"]),
    ("3338291921_fe7ae0c8f8.jpg", "val", ["A man in a red shirt climbs a rock wall."]),
    ("488416045_1c6d903fe0.jpg", "test", ["A girl jumps into a swimming pool.", "A child in the pool", "..."]),
]
images, sentid = [], 0
for imgid, (name, split, raws) in enumerate(flickr_captions):
    sentences = []
    for raw in raws:
        sentences.append(karpathy_sentence(raw, imgid, sentid))
        sentid += 1
    images.append({"sentids": [s["sentid"] for s in sentences], "imgid": imgid, "sentences": sentences,
                   "split": split, "filename": name})
write("dataset_flickr8k.json", json.dumps({"images": images, "dataset": "flickr8k"}))

# dataset_coco.json layout: filepath (train2014/val2014), cocoid, splits include restval.
coco_entries = [
    ("val2014", "COCO_val2014_000000391895.jpg", 391895, "test", ["A man riding a motorcycle on a dirt road.", "Someone on a bike in the hills"]),
    ("val2014", "COCO_val2014_000000522418.jpg", 522418, "restval", ["A woman cutting a large cake with a knife."]),
    ("train2014", "COCO_train2014_000000057870.jpg", 57870, "train", ["A restaurant with wooden tables and chairs.", "An empty dining room."]),
    ("val2014", "COCO_val2014_000000184613.jpg", 184613, "val", ["A boy holding an umbrella next to a cow."]),
]
images, sentid = [], 0
for imgid, (filepath, name, cocoid, split, raws) in enumerate(coco_entries):
    sentences = []
    for raw in raws:
        sentences.append(karpathy_sentence(raw, imgid, sentid))
        sentid += 1
    images.append({"filepath": filepath, "sentids": [s["sentid"] for s in sentences], "filename": name,
                   "imgid": imgid, "split": split, "sentences": sentences, "cocoid": cocoid})
write("dataset_coco.json", json.dumps({"images": images, "dataset": "coco"}))


# captions_train2014.json / captions_val2014.json layout.
def coco_file(entries, folder):
    info = {"description": "made-up test fixture in COCO captions layout", "version": "1.0", "year": 2014}
    licenses = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                 "name": "Attribution-NonCommercial-ShareAlike License"}]
    imgs, anns, ann_id = [], [], 1
    for image_id, name, caps in entries:
        imgs.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{folder}/{name}",
                     "height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45",
                     "flickr_url": "http://farm.example/x.jpg", "id": image_id})
    # Annotations interleaved across images, as in the real files.
    pending = [(image_id, cap) for image_id, _, caps in entries for cap in caps]
    pending.sort(key=lambda p: (len(p[1]), p[0]))
    for image_id, cap in pending:
        anns.append({"image_id": image_id, "id": ann_id, "caption": cap})
        ann_id += 1
    return {"info": info, "images": imgs, "licenses": licenses, "annotations": anns}


write("coco/annotations/captions_train2014.json", json.dumps(coco_file([
    (57870, "COCO_train2014_000000057870.jpg", ["A restaurant with wooden tables.", "An empty dining room with chairs."]),
    (384029, "COCO_train2014_000000384029.jpg", ["A man on a skateboard does a trick."]),
    (222016, "COCO_train2014_000000222016.jpg", []),  # an image without captions
], "train2014")))
write("coco/annotations/captions_val2014.json", json.dumps(coco_file([
    (391895, "COCO_val2014_000000391895.jpg", ["A man riding a motorcycle on a dirt road."]),
    (522418, "COCO_val2014_000000522418.jpg", ["A woman cutting a large cake."]),
], "val2014")))
for folder, name in [("train2014", "COCO_train2014_000000057870.jpg"), ("val2014", "COCO_val2014_000000391895.jpg")]:
    write(f"coco/images/{folder}/{name}", "")  # placeholders, so the COCO_<set>_ subfolder is found

# Flickr8k.token.txt and the split lists (Flickr8k_text/ layout). One image is in no list.
token_lines = []
flickr_text = [
    ("1000268201_693b08cb0e.jpg", ["A child in a pink dress is climbing up a set of stairs .", "A little girl climbing into a wooden playhouse ."]),
    ("1001773457_577c3a7d70.jpg", ["A black dog and a spotted dog are fighting", "Two dogs on pavement moving toward each other ."]),
    ("1002674143_1b742ab4b8.jpg", ["A little girl covered in paint sits in front of a painted rainbow ."]),
    ("1003163366_44323f5815.jpg", ["A man lays on a bench while his dog sits by him ."]),
    ("1007129816_e794419615.jpg", ["A man in an orange hat starring at something ."]),
]
# Interleave the first two images' lines, so "first appearance" order matters.
order = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (3, 0), (4, 0)]
for i, k in order:
    name, caps = flickr_text[i]
    token_lines.append(f"{name}#{k}\t{caps[k]}")
write("flickr8k/Flickr8k.token.txt", "\n".join(token_lines) + "\n")
write("flickr8k/Flickr_8k.trainImages.txt", "1001773457_577c3a7d70.jpg\n1000268201_693b08cb0e.jpg\n")
write("flickr8k/Flickr_8k.devImages.txt", "1002674143_1b742ab4b8.jpg\n")
write("flickr8k/Flickr_8k.testImages.txt", "1003163366_44323f5815.jpg\n")

# A dataset directory (what `caption dataset shapes` writes): captions.json + scenes.json.
shapes = {"images": [
    {"filename": "images/00000.png", "split": "train", "imgid": 0,
     "sentences": [{"raw": "a red circle left of a blue square", "tokens": []}]},
    {"filename": "images/00001.png", "split": "val", "imgid": 1,
     "sentences": [{"raw": "two green triangles", "tokens": []}]},
]}
write("shapes/captions.json", json.dumps(shapes, indent=1))
write("shapes/scenes.json", json.dumps({"images": []}))

# Malformed files.
write("bad/bad_json.json", '{"images": [\n  {"filename": "a.jpg", "split": "train",\n   "sentences": [{"raw" "x"}]}\n]}\n')
write("bad/missing_sentences.json", json.dumps({"images": [
    {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a dog"}]},
    {"filename": "b.jpg", "split": "train"}]}))
write("bad/missing_raw.json", json.dumps({"images": [
    {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a dog"}, {"tokens": ["a"]}]}]}))
write("bad/unknown_split.json", json.dumps({"images": [
    {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a dog"}]},
    {"filename": "b.jpg", "split": "validation", "sentences": [{"raw": "a cat"}]}]}))
write("bad/coco_unknown_image.json", json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
    "annotations": [{"image_id": 1, "caption": "a dog"}, {"image_id": 7, "caption": "a cat"}]}))
write("bad/coco_string_id.json", json.dumps({"images": [{"id": "1", "file_name": "a.jpg"}],
    "annotations": []}))
write("bad/no_train.json", json.dumps({"images": [
    {"filename": "a.jpg", "split": "test", "sentences": [{"raw": "a dog"}]}]}))
write("bad/bad_token_line.txt", "a.jpg#0\tA dog runs .\nthis line has no tab\n")
write("bad/neither.json", json.dumps({"categories": []}))
