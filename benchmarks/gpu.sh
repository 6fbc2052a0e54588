#!/usr/bin/env bash
# The GPU runs of benchmarks/README.md, sized for one accelerator in under 10 minutes (each step is capped).
# Needs torch with CUDA and `pip install -e '.[bench]'` (SAELens, sparsify); writes JSON rows to $OUT (default ./gpu-bench).
#   bash benchmarks/gpu.sh
set -u
OUT=${OUT:-gpu-bench}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 BABELSCOPE_NO_PROGRESS=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
run() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | grep -v "^Triton" | tee "$OUT/$name.txt"
}
# SAE training at Study B's width class: TopK (d 1024 and 3072, 16-32x) and ReLU, vs the GEMM limit and the peers
run sae_topk 150 python benchmarks/sae_train.py --device cuda --configs 1024x32,3072x16 --steps 50 --batch-size 4096 \
  --json "$OUT/sae_topk.json"
run sae_relu 90 python benchmarks/sae_train.py --device cuda --arch relu --configs 1024x32 --steps 50 --batch-size 4096 \
  --json "$OUT/sae_relu.json"
# LM training: tokens/s vs the hand-written Llama and MFU vs torch.mm at the model's shapes (bf16 autocast)
run lm 90 python benchmarks/train_throughput.py --device cuda --presets 33M --batch 32 --context 512 --steps 10 \
  --json "$OUT/lm.json"
# the feature pass vs a bare forward to the hook + the encode
run features 90 python benchmarks/analysis.py --device cuda --skip-tsea --preset 33M --tokens 500000 --d-sae 32768 \
  --batch-size 64
# the sweep, one hook per pass vs all layers per pass (4 x 3 cells of the mini preset)
run sweep 150 python benchmarks/sweep.py --device cuda --sae-tokens 400000 --store-tokens 50000 --json "$OUT/sweep.json"
# feature pages, one feature at a time vs side by side
run dashboard 90 python benchmarks/dashboard.py --device cuda --preset 33M --d-sae 16384 --pages 64
