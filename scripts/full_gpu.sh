#!/usr/bin/env bash
# FULL on one GPU in one call: every (plan, item input, seed) cell at once inside a budget, then
# the attention-speed benchmark at FULL size. About 8 minutes of wall time (BUDGET + ~2.5 min).
#
#   here:   mkdir -p .gpu_data && cp -r data/ml-1m-sasrec data/ml-1m .gpu_data/
#   there:  bash scripts/full_gpu.sh        (device tool: carry [".gpu_data"], timeout_s 600)
#
# No install: the machine's own python3 (torch, transformers, pandas, ...) with PYTHONPATH=.
# Writes 6 files into $OUT: env.txt (nvidia-smi, versions, is a pretrained GPT-2 cached),
# full.log, bench.log, bench.json, summary.txt and results_full.tgz (results/full: every cell's
# JSON with per-user ranks, comparison.csv, report.txt with CIs, sizing.json, comparison.png).
# Every step runs under its own timeout, and the bundle is made whatever happened before it.
set -u -o pipefail
OUT=${OUT:-/tmp/full_gpu}
BUDGET=${BUDGET:-330}      # seconds until every cell is written: data, timing and training
TOTAL=${TOTAL:-510}        # seconds for the whole script; the benchmark gets what is left
PARALLEL=${PARALLEL:-12}   # worker processes on the GPU (fewer if their memory would not fit)
PY=${PY:-python3}
FULL_ARGS=${FULL_ARGS:-}   # extra flags for iam_tutorial.lab.full (the CPU dry run shrinks the model)
BENCH_ARGS=${BENCH_ARGS:---full}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export IAM_DATA_DIR=${IAM_DATA_DIR:-.gpu_data} IAM_RESULTS_DIR=$PWD/results
export IAM_FIGURES_DIR=$PWD/results/full
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

{
  date -u; nvidia-smi
  timeout 60 "$PY" - <<'PYEOF'
import importlib, os
for name in ("torch", "transformers", "tokenizers", "einops", "pandas", "matplotlib", "seaborn",
             "tqdm", "numpy"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as error:
        print(f"{name} MISSING: {error!r}")
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(), "cpus", os.cpu_count())
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(torch.cuda.get_device_name(0), f"memory {total / 2**30:.1f} GiB, free {free / 2**30:.1f}")
try:
    from huggingface_hub import constants, scan_cache_dir
    print("HF cache", constants.HF_HUB_CACHE, [r.repo_id for r in scan_cache_dir().repos])
except Exception as error:
    print("HF cache scan:", repr(error)[:200])
try:
    from transformers import GPT2LMHeadModel
    GPT2LMHeadModel.from_pretrained("gpt2", local_files_only=True)
    print("pretrained gpt2: FOUND in the local Hugging Face cache")
except Exception as error:
    print("pretrained gpt2: not in any local cache here:", type(error).__name__)
PYEOF
  echo "gpt2 folders on disk:"; timeout 20 find / -xdev -maxdepth 7 -type d -iname '*gpt2*' \
    -not -path '*/proc/*' 2>/dev/null | grep -v -e site-packages/transformers -e '/\.git/' | head -20
} > "$OUT/env.txt" 2>&1

timeout $(( BUDGET + 120 )) "$PY" -m iam_tutorial.lab.full --budget-seconds "$BUDGET" \
  --parallel "$PARALLEL" --min-epochs 5 --out results/full $FULL_ARGS 2>&1 | tee "$OUT/full.log"
echo "== full.py done at $(elapsed) s" | tee -a "$OUT/full.log"

left=$(( TOTAL - $(elapsed) - 10 ))
timeout $(( left > 60 ? left : 60 )) "$PY" benchmarks/attention_speed.py $BENCH_ARGS \
  --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1
rc=$?
echo "== benchmark done at $(elapsed) s (exit $rc)" >> "$OUT/bench.log"

tar czf "$OUT/results_full.tgz" results/full 2>/dev/null
cp results/full/summary.txt "$OUT/summary.txt" 2>/dev/null
echo; echo "== attention speed (FULL size, forward + backward)"; tail -n 22 "$OUT/bench.log"
echo; echo "== FULL comparison, wall $(elapsed) s"; cat "$OUT/summary.txt" 2>/dev/null
