#!/bin/bash
# run_distill.sh SRC J SEED...: a distillation stage (--resume --distill_steps=4000
# --teacher_weight=1) on copies of SRC's 4,000-step reference runs, against a copy
# of SRC's oracle database; outputs J/w1-sN/trainer2.log ("distillation done").
set -u
SRC=$1 J=$2; shift 2
BIN=/work/exp/bin-order
mkdir -p $J
[[ -f $J/oracle.db ]] || cp $SRC/oracle.db* $J/
rm -f $J/oracle.port
$BIN/oracle_server/oracle_server --host=127.0.0.1 --port=0 --port_file=$J/oracle.port --db=$J/oracle.db > $J/oracle.log 2>&1 &
OPID=$!
for _ in $(seq 100); do [[ -s $J/oracle.port ]] && break; sleep 0.2; done
PORT=$(cat $J/oracle.port)
run() {  # seed
  local s=$1
  local src=$SRC/b100-typiclust-freematch-simclr-steps_4000-lambda_c_1-contrast_memory_240-s$s
  local dst=$J/w1-s$s
  rm -rf $dst; cp -r $src $dst
  local args
  args=$(sed -e "s#--oracle=[^ ]*#--oracle=127.0.0.1:$PORT#" -e "s#--out_dir=[^ ]*#--out_dir=$dst#" -e "s#^[^ ]*trainer ##" $src/command.txt)
  echo "$BIN/trainer/trainer $args --resume --distill_steps=4000 --teacher_weight=1" > $dst/command2.txt
  nice $BIN/trainer/trainer $args --resume --distill_steps=4000 --teacher_weight=1 > $dst/trainer2.log 2>&1
  echo "$? s$s $(grep -h 'distillation done' $dst/trainer2.log)"
}
pids=()
for s in "$@"; do run $s & pids+=($!); done
wait "${pids[@]}"
kill $OPID
$BIN/oracle_server/oraclectl summary --db=$J/oracle.db > $J/summary.txt
$BIN/oracle_server/oraclectl verify --db=$J/oracle.db > $J/verify.txt
