#!/usr/bin/env bash
# The comparison that decides, on SmolLM2-135M (issue "The comparison that decides"): token, hatllm
# and iam-heads (and popularity), seeds 0-2, users 1..300, at three fine-tuning budgets, 1, 2 and
# 4 epochs at a constant rate: one 4-epoch run per (plan, seed) whose first epochs are the shorter
# budgets (lab/hooks.py). Each budget's cell is written to results/llm/epochs-E/runs/ as soon as
# its run reaches it, and every epoch is checkpointed, so the run spans sessions: re-run this script
# and it resumes. Commit finished cells (never the checkpoints). Same as `make llm`.
#
#   bash scripts/llm_comparison.sh            # PARALLEL=2 trains two runs at once, a core each
#   USERS=None SEEDS=[0,1,2,3,4] bash scripts/llm_comparison.sh   # the design that detects ~7%
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONHASHSEED=0
extra=()
[ -n "${USERS:-}" ] && extra+=(n_users="$USERS")
[ -n "${SEEDS:-}" ] && extra+=("seeds=$SEEDS")
out=results/llm${USERS:+-users-$USERS}
"$PY" -m iam_tutorial.lab.compare --mode llm --parallel "${PARALLEL:-2}" \
  ${extra[@]+--set "${extra[@]}"} --out "$out"
