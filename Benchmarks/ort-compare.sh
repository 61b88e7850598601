#!/usr/bin/env bash
# Side-by-side speed of robustd's encoder and ONNX Runtime on the same work (Banking77 test
# sentences, batch 64 length-sorted; single-query latency), in one run on this machine.
# Speed on shared machines drifts between minutes: compare the ratios. Not run by CI.
# Needs PyPI (numpy, onnx, onnxruntime, safetensors, tokenizers go into a throwaway venv).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-$HOME/.cache/robustd/models/all-MiniLM-L6-v2}
ORT=../shared/tools/ort-reference
V=${ORT_VENV:-/tmp/robustd-ort-venv}
[ -x "$V/bin/python" ] || { python3 -m venv "$V" && "$V/bin/pip" install -q numpy onnx onnxruntime safetensors tokenizers; }
[ -f "$V/bert.onnx" ] || "$V/bin/python" "$ORT/bert_onnx.py" "$MODEL" "$V/bert.onnx" >/dev/null
[ -f "$V/bert-int8.onnx" ] || "$V/bin/python" -c "
from onnxruntime.quantization import quantize_dynamic, QuantType
quantize_dynamic('$V/bert.onnx', '$V/bert-int8.onnx', per_channel=True, weight_type=QuantType.QInt8)" 2>/dev/null
swift build -c release --product robustd-bench >/dev/null
# Two rounds, alternating, so that the machine's drift between minutes shows in both columns.
for round in 1 2; do
  echo "== round $round: ONNX Runtime fp32 (2 intra-op threads)"
  "$V/bin/python" "$ORT/ort_bench.py" "$MODEL" "$V/bert.onnx"
  echo "== round $round: ONNX Runtime int8 (quantize_dynamic, per-channel QInt8 weights)"
  "$V/bin/python" "$ORT/ort_bench.py" "$MODEL" "$V/bert-int8.onnx"
  for p in fp32 int8; do
    echo "== round $round: robustd $p"
    .build/release/robustd-bench encoder --model "$MODEL" --precision "$p" --repeats 3 --queries 300
  done
done
# embed over the daemon's socket against the in-process encoder, in rounds side by side (the
# ratio is what the socket costs; the rows above place the in-process figure against ONNX Runtime).
swift build -c release --product robustd >/dev/null
for p in fp32 int8; do
  echo "== robustd $p: embed over the socket / in process"
  .build/release/robustd-bench services --embed-only --model "$MODEL" --precision "$p"
done
