#!/usr/bin/env python3
"""Choose one fusion default for every collection, honestly: for each test
collection, pick the fusion with the best mean nDCG@10 over the *other*
collections' sweeps (leave one collection out), then report it on the held-out
one beside plain RRF and each signal.

Input: the files `ragchat eval DIR --tune --sweep-out FILE` writes, one per
collection. Usage: scripts/fusion-default.py SWEEP.tsv SWEEP.tsv [...]
"""
import csv
import sys


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows[0]["collection"], {r["label"]: float(r["ndcg@10"]) for r in rows}


def main(paths):
    sweeps = dict(load(p) for p in paths)
    names = sorted(sweeps)
    labels = [l for l in sweeps[names[0]] if all(l in sweeps[n] for n in names)]
    plain = "rrf k=60 w=1:1"
    print(f"{'held out':<22} {'chosen on the others':<24} {'nDCG@10':>8} {'plain rrf':>10}")
    for held in names:
        others = [n for n in names if n != held]
        best = max(labels, key=lambda l: (sum(sweeps[n][l] for n in others), l == plain))
        print(f"{held:<22} {best:<24} {sweeps[held][best]:>8.4f} {sweeps[held][plain]:>10.4f}")
    best = max(labels, key=lambda l: sum(sweeps[n][l] for n in names))
    print(f"best mean over all: {best}: " + ", ".join(f"{n} {sweeps[n][best]:.4f}" for n in names))
    # The smallest gain over plain RRF across collections, for the candidates
    # that never lose to it.
    safe = [l for l in labels if all(sweeps[n][l] > sweeps[n][plain] for n in names)]
    safe.sort(key=lambda l: -min(sweeps[n][l] - sweeps[n][plain] for n in names))
    print("above plain rrf on every collection (largest smallest gain first):")
    for l in safe[:8]:
        print(f"  {l:<24} " + ", ".join(f"{n} {sweeps[n][l]:.4f}" for n in names))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1:])
