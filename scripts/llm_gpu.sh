#!/usr/bin/env bash
# The every-user comparison (results/every-user/PLAN.md: SmolLM2-135M fine-tuned, token / hatllm /
# iam-heads, a data-matched SASRec and popularity, tested on all 6,040 users and 3,416 items) on one
# GPU, with more training users and seeds than two CPU cores afford: TRAIN_USERS (default 6040)
# and SEEDS (default 0-9). Its cells go to results/every-user-gpu/ (another design: not mixed with
# the CPU run's cells).
#
# The GGUF weights (94 MiB) exceed what one device call carries (64 MiB), so they travel in two
# halves to a warm machine (it stays warm idle_release_s after a call: make the calls back to back):
#   here:    bash scripts/llm_gpu.sh pack      # .gpu_llm_a/: first half + the gguf wheel;
#                                              # .gpu_llm_b/: second half + the data, packed
#   call 1:  carry [".gpu_llm_a"], command "bash scripts/llm_gpu.sh stage"     (keeps it in .gpu_keep/)
#   call 2:  carry [".gpu_llm_b"], command "bash scripts/llm_gpu.sh run", timeout_s 600
# `run` joins the halves (the backbone loader checks the sha256), installs gguf, trains every cell
# in PARALLEL processes on the one GPU until TOTAL seconds, and bundles into $OUT: env.txt, llm.log
# and results_llm_gpu.tgz (results/every-user-gpu/runs: each cell with per-user ranks, the report),
# whatever finished: each cell is written the moment it ends.
set -u -o pipefail
cd "$(dirname "$0")/.."
GGUF=backbones/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
HALF=52000000  # bytes in the first half: each call (working tree included) stays under 64 MiB
case "${1:-}" in
  pack)
    [ -f "$GGUF" ] || { echo "No $GGUF: run make setup first." >&2; exit 2; }
    data=${IAM_DATA_DIR:-data}
    rm -rf .gpu_llm_a .gpu_llm_b && mkdir -p .gpu_llm_a .gpu_llm_b
    head -c $HALF "$GGUF" > .gpu_llm_a/gguf.part
    tail -c +$((HALF + 1)) "$GGUF" > .gpu_llm_b/gguf.part
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d .gpu_llm_a gguf==0.19.0
    tar czf .gpu_llm_b/data.tgz -C "$data" ml-1m ml-1m-sasrec
    du -sh .gpu_llm_a .gpu_llm_b
    exit ;;
  stage)
    mkdir -p .gpu_keep && cp .gpu_llm_a/* .gpu_keep/ && ls -l .gpu_keep
    exit ;;
  run) ;;
  *) echo "usage: bash scripts/llm_gpu.sh pack|stage|run (see the header)" >&2; exit 2 ;;
esac

OUT=${OUT:-/tmp/llm_gpu}
TOTAL=${TOTAL:-540}        # seconds for training, then the bundle
PARALLEL=${PARALLEL:-8}    # worker processes sharing the GPU: one cell (plan, seed) each
SEEDS=${SEEDS:-[0,1,2,3,4,5,6,7,8,9]}
TRAIN_USERS=${TRAIN_USERS:-6040}
PLANS=${PLANS:-}           # default: the experiment's (popularity token hatllm iam-heads sasrec)
DEVICE=${DEVICE:-cuda}     # a CPU dry run: DEVICE=cpu TRAIN_USERS=12 SEEDS=[0] PLANS="popularity token"
PY=${PY:-python3}
mkdir -p "$OUT" "$(dirname "$GGUF")" .gpu_data
export PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export IAM_DATA_DIR=$PWD/.gpu_data PYTHONHASHSEED=0
cat .gpu_keep/gguf.part .gpu_llm_b/gguf.part > "$GGUF"
tar xzf .gpu_llm_b/data.tgz -C .gpu_data
"$PY" -m pip install -q --no-index --no-deps --target /tmp/site .gpu_keep/gguf-*.whl
{ date -u; nvidia-smi; "$PY" -c "import torch, transformers, gguf, peft; print(torch.__version__,
transformers.__version__, gguf.__version__ if hasattr(gguf, '__version__') else 'gguf', peft.__version__)"
  sha256sum "$GGUF"; } > "$OUT/env.txt" 2>&1
grid=(--set train_users="$TRAIN_USERS" "seeds=$SEEDS" device="$DEVICE" eval_batch_size=256)
timeout "$TOTAL" "$PY" -m iam_tutorial.lab.compare --mode every-user --parallel "$PARALLEL" \
  ${PLANS:+--plans $PLANS} "${grid[@]}" --out results/every-user-gpu 2>&1 | tee "$OUT/llm.log"
# A run cut off by the clock leaves its finished cells stored: report what is there.
"$PY" -m iam_tutorial.lab.compare --mode every-user --report-only ${PLANS:+--plans $PLANS} \
  "${grid[@]}" --out results/every-user-gpu >> "$OUT/llm.log" 2>&1
tar czf "$OUT/results_llm_gpu.tgz" --exclude=checkpoints results/every-user-gpu 2>/dev/null
cat results/every-user-gpu/report.txt 2>/dev/null
