#!/usr/bin/env bash
# The comparison that decides, on SmolLM2-135M (issue "The comparison that decides"): token, hatllm
# and iam-heads (and popularity) at three fine-tuning budgets, each its own schedule (cosine decay
# over the budget), seeds 0-2, all 6,040 users (the llm preset: the pilot's sizing). Every cell is written to
# results/llm/epochs-E/runs/ as it finishes and every epoch is checkpointed, so the run spans
# sessions: re-run this script and it resumes. Commit finished cells (never the checkpoints).
#
#   bash scripts/llm_comparison.sh            # PARALLEL=2 trains two cells at once, a core each
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PARALLEL=${PARALLEL:-1}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
for epochs in ${BUDGETS:-1 4 12}; do
  "$PY" -m iam_tutorial.lab.compare --mode llm --parallel "$PARALLEL" \
    --set max_epochs="$epochs" decay_epochs="$epochs" min_epochs="$epochs" \
    --out "results/llm/epochs-$epochs"
done
