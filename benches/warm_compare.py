"""Warm update vs full retrain: per model mode, windows added, training time,
test macro F1 and whether the warm figure is inside the full retrain's 95%
interval.

    python3 benches/warm_compare.py WARM_OUT FULL_OUT
"""
import json, sys
warm_out, full_out = sys.argv[1], sys.argv[2]
w = json.load(open(f"{warm_out}/eval/host/report.json"))
f = json.load(open(f"{full_out}/eval/host/report.json"))
fm = {m["model"]: m for m in f["models"]}
inside = 0
print("| model | mode | windows added | warm s | full s | warm F1 | full F1 | full 95% interval | inside |")
print("|---|---|---|---|---|---|---|---|---|")
for m in w["models"]:
    full = fm[m["model"]]
    lo, hi = full["ci"]["low"], full["ci"]["high"]
    ok = lo <= m["macro_f1"] <= hi
    inside += ok
    card = json.load(open(f"{warm_out}/models/host/{m['model']}/model.json"))["training"]
    cf = json.load(open(f"{full_out}/models/host/{m['model']}/model.json"))["training"]
    print(f"| {m['model']} | {card['mode']} | {card.get('windows_added', '')} | {card['wall_s']:.1f} | {cf['wall_s']:.1f} | "
          f"{m['macro_f1']:.3f} | {full['macro_f1']:.3f} | [{lo:.3f}, {hi:.3f}] | {'yes' if ok else '**no**'} |")
print(f"\ninside: {inside} of {len(w['models'])}; test episodes {w['test']['episodes']} / {f['test']['episodes']}")
