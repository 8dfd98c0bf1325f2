#!/usr/bin/env bash
# Waits for the seeds 3-6 chains, then runs seeds 7 and 8.
while pgrep -f "run_mc.sh" >/dev/null; do sleep 20; done
CHAIN_A=7 CHAIN_B=8 bash /work/exp/mc/run_mc.sh
