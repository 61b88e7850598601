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
swift build -c release --product robustd-bench >/dev/null
echo "== ONNX Runtime (2 intra-op threads)"
"$V/bin/python" "$ORT/ort_bench.py" "$MODEL" "$V/bert.onnx"
echo "== robustd"
.build/release/robustd-bench encoder --model "$MODEL"
