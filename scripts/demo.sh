#!/usr/bin/env bash
# End-to-end demo: generate the bundled texture dataset, then for each texture train
# PatchCore on MobileNetV2 from the Edge Impulse data directory (the container's inputs),
# test on the folder layout (image + pixel AUROC), write the interactive model-testing page and
# draw heatmaps for a few test images.
set -euo pipefail
DEMO=${1:-demo}
DATA="$DEMO/data"
[ -f "$DATA/gravel-ei/X_split_train.npy" ] || python -m framework.demo_data --out "$DATA"
printf '\n%-8s %-8s %-8s %-8s %-12s %-12s %-10s\n' texture F1 FPR recall "image AUROC" "pixel AUROC" threshold
results=()
for t in brick grass gravel; do
  vadblocks train --data-directory "$DATA/$t-ei" --out-directory "$DEMO/models/$t" --quiet >/dev/null
  json=$(vadblocks test --model-directory "$DEMO/models/$t" --data-directory "$DATA/$t" --json \
    --report "$DEMO/reports/$t.html" 2>/dev/null)
  vadblocks predict --model-directory "$DEMO/models/$t" --heatmaps "$DEMO/heatmaps/$t" \
    "$DATA/$t"/test/good/000.png "$DATA/$t"/test/*/00[0-3].png >/dev/null
  results+=("$(python - "$t" "$json" <<'PY'
import json, sys
t, r = sys.argv[1], json.loads(sys.argv[2])
f = lambda v: "n/a" if v is None else f"{v:.3f}"
print(f"{t:<8} {f(r['f1']):<8} {f(r['fpr']):<8} {f(r['recall']):<8} {f(r['image_auroc']):<12} "
      f"{f(r['pixel_auroc']):<12} {r['threshold']:<10.3f}")
PY
)")
  echo "${results[-1]}"
done
echo
echo "Models:   $DEMO/models/<texture>  (anomaly_metadata.json, scorer_state.npz, backbone.npz)"
echo "Heatmaps: $DEMO/heatmaps/<texture>/*_heatmap.png"
echo "Reports:  $(for t in brick grass gravel; do printf '%s ' "$DEMO/reports/$t.html"; done)(open in a browser)"
