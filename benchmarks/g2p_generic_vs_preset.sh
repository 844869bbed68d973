#!/usr/bin/env bash
# G2P through the generic path (`minis2s train` on CMUdict exported as TSV) beside the G2P preset
# (`minis2s g2p train`), same settings and the same time budget; then phoneme-to-grapheme (the
# reverse task) through the generic path. Test figures are printed and appended to $OUT/results.txt.
#   bash benchmarks/g2p_generic_vs_preset.sh [MINUTES] [OUT]      (default: 10 minutes each, runs/compare)
set -euo pipefail
MIN=${1:-10}
OUT=${2:-runs/compare}
SETTINGS="--arch attention --epochs 40 --lr-threshold 0.01 --checkpoint-every 500 --time-limit $MIN --quiet"
mkdir -p "$OUT"
python -m minis2s data cmudict --out "$OUT/data" --direction both
python -m minis2s train --train "$OUT/data/cmudict-g2p-train.tsv" --dev "$OUT/data/cmudict-g2p-dev.tsv" \
  --src-tokens char --trg-tokens space --out "$OUT/g2p-generic" $SETTINGS
python -m minis2s g2p train --out "$OUT/g2p-preset" $SETTINGS
python -m minis2s train --train "$OUT/data/cmudict-p2g-train.tsv" --dev "$OUT/data/cmudict-p2g-dev.tsv" \
  --src-tokens space --trg-tokens char --out "$OUT/p2g-generic" $SETTINGS
{
  echo "== $MIN minutes each, $(date -u +%FT%TZ)"
  echo "g2p generic (exact = 1 - WER, wer = PER):"
  python -m minis2s eval --model "$OUT/g2p-generic/best" --data "$OUT/data/cmudict-g2p-test.tsv" --metric exact --metric wer
  echo "g2p preset:"
  python -m minis2s g2p eval --model "$OUT/g2p-preset/best" --split test
  echo "p2g generic (exact = 1 - WER, cer = letter error rate):"
  python -m minis2s eval --model "$OUT/p2g-generic/best" --data "$OUT/data/cmudict-p2g-test.tsv" --metric exact --metric cer
} 2>&1 | tee -a "$OUT/results.txt"
