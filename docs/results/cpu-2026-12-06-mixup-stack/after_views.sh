#!/usr/bin/env bash
# After run_views.sh: the same seeds with distribution alignment in place of
# the second weak view.
while pgrep -f "v2/run_views.sh" > /dev/null; do sleep 20; done
ARM=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--eval_every=2000:--mixup_alpha=0.75:--distribution_alignment \
NAME=mixda_8k exec "$(dirname "$0")/run_views.sh"
