#!/usr/bin/env bash
# After the alpha-0.4 chains: labelled mixup (0.75) with FreeMatch's fairness
# term ten times USB's weight (--lambda_f=0.01 against 0.001), seeds 3-8.
while pgrep -f "v2/run_views.sh" > /dev/null; do sleep 20; done
ARM=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--eval_every=2000:--mixup_alpha=0.75:--lambda_f=0.01 \
NAME=mixlf01_8k exec "$(dirname "$0")/run_views.sh"
