"""Learning curves of every method on ``shapes``: the linear probe of the frozen backbone against
training epochs, one line per method, the baselines dashed (the notes' comparison, NYU Deep
Learning notes ch. 15-1, "Joint Embedding Methods — Contrastive": joint embeddings against the
generative route, the DAE, and a pretext task, jigsaw).

The runs (each probes at 5, 10, 20, 40 and 80 epochs; one per core, resumable with --resume):

    for m in simclr moco pirl barlow_twins vicreg swav byol simsiam dino data2vec dae jigsaw; do
        npjem pretrain --method $m --epochs 80 --probe-every 5,10,20,40,80 --out runs/curves/$m
    done
    npjem baselines --epochs 80 --probe-every 5,10,20,40,80 --out runs/curves/baselines
    npjem baselines --arch vit_tiny --only random,supervised --epochs 80 --probe-every 5,10,20,40,80 \
        --out runs/curves/baselines-vit     # data2vec's own backbone: the yardstick of its gap

then this script draws docs/img/learning-curves.png and prints the table:

    python examples/learning_curves.py runs/curves/* --out docs/img/learning-curves.png
"""
import argparse

from npjem import runs


def table(rows):
    """A Markdown table: each curve's probe at each epoch, its best within the run, and the share of
    the random-init → supervised gap closed there (the ceiling trained for as many epochs)."""
    epochs = sorted({e for r in rows for e in r["epochs"]})
    head = "| method | " + " | ".join(f"ep {e}" for e in epochs) + " | best (epoch) | gap closed at best |"
    lines = [head, "|---" * (len(epochs) + 3) + "|"]
    for r in rows:
        at = dict(zip(r["epochs"], r["linear_probe"]))
        cells = [f"{at[e]:.3f}" if e in at else "" for e in epochs]
        gap = "" if r["gap_closed"] is None else f"{100 * r['gap_closed']:.0f} %"
        lines.append(f"| {r['name']} | " + " | ".join(cells) + f" | {r['best']:.3f} ({r['best_epoch']}) | {gap} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="pretrain and baselines run folders, run with --probe-every")
    ap.add_argument("--out", default="learning-curves.png", help="the PNG to write")
    args = ap.parse_args()
    rows = runs.learning_curves(args.folders, args.out)
    print(table(rows))
    print(f"\nwrote {args.out}")
