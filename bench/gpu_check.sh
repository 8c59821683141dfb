#!/bin/bash
# Everything the project measures on a CUDA GPU, in one go, for a machine lent for a few minutes:
# the CUDA tests, the trainer against a plain PyTorch loop (the cookbook preset), then the `gpu`
# preset's test perplexity on the first fold of bench/bench_quality.py after MINUTES of training.
# Each step's output is written to OUT as it finishes, so a run cut short keeps what it did.
# bench/RESULTS.md ("On a GPU") has the figures of the last such run.
#
#   bash bench/gpu_check.sh                      # about 12 minutes: the preset's whole 10
#   MINUTES=7 bash bench/gpu_check.sh gpu-out    # to fit a 10-minute slot
#   VARIANTS="--set dropout=0.7 --set input_dropout=0.7|--set weight_drop=0.7" bash bench/gpu_check.sh
#
# VARIANTS (changes to the preset, separated by |) run beside the preset, sharing the GPU: each
# then gets a share of it, so their figures (and the preset's) are for a share, not a whole GPU.
set -u
OUT=${1:-gpu-results}
MINUTES=${MINUTES:-10}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

{
    date
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PYTHON" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/environment.txt" 2>&1

"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    tests/test_inference.py::test_on_a_gpu_the_fast_path_gives_the_cpu_results > "$OUT/cuda_tests.txt" 2>&1
echo "pytest exit status $?" >> "$OUT/cuda_tests.txt"

"$PYTHON" bench/bench_train.py race --preset cookbook --device cuda --repeats 3 --threads 4 > "$OUT/race.txt" 2>&1

quality() {  # NAME, then changes to the gpu preset
    local name=$1
    shift
    "$PYTHON" bench/bench_quality.py --preset gpu --fold 1 --threads 4 --minutes "$("$PYTHON" -c "print($MINUTES + 0.5)")" \
        --set train_minutes="$MINUTES" "$@" > "$OUT/quality_$name.txt" 2>&1
}
quality preset &
index=0
IFS='|' read -ra changes <<< "${VARIANTS:-}"
for change in "${changes[@]}"; do
    index=$((index + 1))
    # shellcheck disable=SC2086  # each variant is a list of --set options
    quality "variant$index" $change &
done
wait
date >> "$OUT/environment.txt"
