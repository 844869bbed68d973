#!/usr/bin/env bash
# G2P through the generic path (`minis2s train` on CMUdict exported as TSV) beside the G2P preset
# (`minis2s g2p train`): the same settings and the same number of steps, each timed; then
# phoneme-to-grapheme (the reverse task) on the same split through the generic path. Test figures
# are printed and appended to $OUT/results.txt.
#   bash benchmarks/g2p_generic_vs_preset.sh [G2P_STEPS] [P2G_STEPS] [OUT]
# (default: 1766 and 3532 steps = 2 and 4 epochs of 112,939 pairs at batch 128; runs/compare)
set -euo pipefail
G2P_STEPS=${1:-1766}
P2G_STEPS=${2:-3532}
OUT=${3:-runs/compare}
SETTINGS="--arch attention --epochs 40 --lr-threshold 0.01 --checkpoint-every 500 --quiet"
mkdir -p "$OUT"
[ -f "$OUT/data/cmudict-g2p-test.tsv" ] || python -m minis2s data cmudict --out "$OUT/data" --direction both
timed() { local t0=$SECONDS; "$@"; echo "$(( SECONDS - t0 )) s: $*" >> "$OUT/times.txt"; }
timed python -m minis2s train --train "$OUT/data/cmudict-g2p-train.tsv" --dev "$OUT/data/cmudict-g2p-dev.tsv" \
  --src-tokens char --trg-tokens space --out "$OUT/g2p-generic" $SETTINGS --max-steps "$G2P_STEPS"
timed python -m minis2s g2p train --out "$OUT/g2p-preset" $SETTINGS --max-steps "$G2P_STEPS"
timed python -m minis2s train --train "$OUT/data/cmudict-p2g-train.tsv" --dev "$OUT/data/cmudict-p2g-dev.tsv" \
  --src-tokens space --trg-tokens char --out "$OUT/p2g-generic" $SETTINGS --max-steps "$P2G_STEPS"
{
  echo "== $G2P_STEPS G2P steps, $P2G_STEPS P2G steps, $(date -u +%FT%TZ)"
  cat "$OUT/times.txt"
  echo "g2p generic, RUN/best (WER = 1 - exact, PER = wer):"
  python -m minis2s eval --model "$OUT/g2p-generic/best" --data "$OUT/data/cmudict-g2p-test.tsv" --metric exact --metric wer
  echo "g2p preset, RUN/best:"
  python -m minis2s g2p eval --model "$OUT/g2p-preset/best" --split test
  echo "p2g generic, RUN/best (WER = 1 - exact, letter error rate = cer):"
  python -m minis2s eval --model "$OUT/p2g-generic/best" --data "$OUT/data/cmudict-p2g-test.tsv" --metric exact --metric cer
  python - "$OUT" <<'PY'
import sys, numpy as np
from minis2s.checkpoint import read_model_dir
a, b = (read_model_dir(f"{sys.argv[1]}/{r}/best")[1] for r in ("g2p-generic", "g2p-preset"))
same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
print("g2p generic and preset best/ weights bit-identical:", same)
PY
} 2>&1 | tee -a "$OUT/results.txt"
