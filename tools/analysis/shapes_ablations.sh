#!/usr/bin/env bash
# The head and TAL ablations on the built-in shapes dataset, with a short
# schedule, collected into one Markdown table (see docs/ablations.md).
#
#   bash tools/analysis/shapes_ablations.sh [WORK_ROOT] [EPOCHS]
#
# WORK_ROOT defaults to work_dirs/shapes_ablations and EPOCHS to 3: each run
# is the main job (configs/tood/tood_r18_fpn_11e_shapes.py) with its cosine
# schedule shortened to EPOCHS and one change from configs/tood/ablations/.
# Like the paper's ablations, every run starts from the anchor-free T-Head
# (the main job itself is anchor-based, which learns faster from scratch):
# the anchor-based row is then the one run that differs in this.
# JOBS=2 runs two trainings at a time with one thread each, which gets
# about 1.2x more work out of a 2-core machine than one run on two threads.
# A run whose work dir already holds a result is skipped, so an interrupted
# sweep resumes where it stopped.
set -euo pipefail

ROOT=${1:-work_dirs/shapes_ablations}
EPOCHS=${2:-3}
JOBS=${JOBS:-1}
MAIN=configs/tood/tood_r18_fpn_11e_shapes.py
PARALLEL=configs/tood/ablations/tood_r18_fpn_parallel-head_11e_shapes.py
SHORT="train_cfg.max_epochs=$EPOCHS train_cfg.val_interval=$EPOCHS \
param_scheduler.1.end=$EPOCHS default_hooks.checkpoint.interval=$EPOCHS \
model.bbox_head.anchor_type=anchor_free"

# name | config | the one change, as --cfg-options
RUNS="
t-head_tal|$MAIN|
t-head_tal_seed1|$MAIN|randomness.seed=1
parallel-head_tal|$PARALLEL|
t-head_atss-all-epochs|$MAIN|model.train_cfg.initial_epoch=$EPOCHS
no-layer-attention|$MAIN|model.bbox_head.use_layer_attention=False
no-prob-map|$MAIN|model.bbox_head.use_cls_prob=False
no-offset-sampling|$MAIN|model.bbox_head.use_reg_offset=False
alpha0.5-beta4|$MAIN|model.train_cfg.alpha=0.5 model.train_cfg.beta=4
alpha0.5-beta6|$MAIN|model.train_cfg.alpha=0.5
alpha0.5-beta8|$MAIN|model.train_cfg.alpha=0.5 model.train_cfg.beta=8
alpha1-beta4|$MAIN|model.train_cfg.beta=4
alpha1-beta8|$MAIN|model.train_cfg.beta=8
alpha1.5-beta4|$MAIN|model.train_cfg.alpha=1.5 model.train_cfg.beta=4
alpha1.5-beta6|$MAIN|model.train_cfg.alpha=1.5
alpha1.5-beta8|$MAIN|model.train_cfg.alpha=1.5 model.train_cfg.beta=8
top5|$MAIN|model.train_cfg.assigner.topk=5
top9|$MAIN|model.train_cfg.assigner.topk=9
top17|$MAIN|model.train_cfg.assigner.topk=17
no-warmup|$MAIN|model.train_cfg.initial_epoch=0
hard-labels|$MAIN|model.train_cfg.hard_labels=True
inside-first|$MAIN|model.train_cfg.assigner.inside_first=True
min-area-conflict|$MAIN|model.train_cfg.assigner.conflict=min_area
anchor-based|$MAIN|model.bbox_head.anchor_type=anchor_based
"

run_one() {
    IFS='|' read -r name config change <<<"$1"
    work_dir=$ROOT/$name
    if compgen -G "$work_dir/*/vis_data/scalars.json" >/dev/null &&
        grep -q bbox_mAP "$work_dir"/*/vis_data/scalars.json; then
        echo "skip $name (done)"
        return
    fi
    echo "run  $name"
    # shellcheck disable=SC2086
    python tools/train.py "$config" --work-dir "$work_dir" \
        --cfg-options $SHORT $change >"$ROOT/$name.log" 2>&1 ||
        echo "FAILED $name: see $ROOT/$name.log"
}
export -f run_one
export ROOT SHORT

mkdir -p "$ROOT"
if [ "$JOBS" -gt 1 ]; then
    export OMP_NUM_THREADS=1
fi
grep -v '^$' <<<"$RUNS" | xargs -d '\n' -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}

python tools/analysis/collect_results.py "$ROOT"/* --out "$ROOT/results.md"
