#!/bin/bash
# Distillation stage on the reference runs' final models (teachers), resumed from
# copies of /work/exp/seeds34 (4,000-step reference recipe, contrast memory 240).
set -u
J=/work/exp/j34
BIN=/work/exp/bin-order
SRC=/work/exp/seeds34
[[ -f $J/oracle.db ]] || cp $SRC/oracle.db* $J/
rm -f $J/oracle.port
$BIN/oracle_server/oracle_server --host=127.0.0.1 --port=0 --port_file=$J/oracle.port --db=$J/oracle.db > $J/oracle.log 2>&1 &
OPID=$!
for _ in $(seq 100); do [[ -s $J/oracle.port ]] && break; sleep 0.2; done
PORT=$(cat $J/oracle.port)
run() {  # weight seed
  local w=$1 s=$2
  local src=$SRC/b100-typiclust-freematch-simclr-steps_4000-lambda_c_1-contrast_memory_240-s$s
  local dst=$J/w$w-s$s
  rm -rf $dst; cp -r $src $dst
  local args
  args=$(cat $src/command.txt | sed -e "s#--oracle=[^ ]*#--oracle=127.0.0.1:$PORT#" -e "s#--out_dir=[^ ]*#--out_dir=$dst#" -e "s#^[^ ]*trainer ##")
  echo "$BIN/trainer/trainer $args --resume --distill_steps=${DSTEPS:-4000} --teacher_weight=$w" > $dst/command2.txt
  nice $BIN/trainer/trainer $args --resume --distill_steps=${DSTEPS:-4000} --teacher_weight=$w > $dst/trainer2.log 2>&1
  echo "$? w$w s$s $(grep -h 'distillation done' $dst/trainer2.log)"
}
run 1 3 & p1=$!
run 1 4 & p2=$!
wait $p1 $p2
kill $OPID
