#!/bin/bash
# Teacher+student ensembles of finished distillation runs (no training: the
# students are complete, so --resume only re-scores), resumed from copies.
#   j-distill: reference teachers (4,000 steps), students w1 and w0.5
#   k-distill: gen2 (second generation, w0.5) and t8000 (8,000-step teacher, w0.5)
set -u
M=/work/exp/m-ensemble
BIN=/work/bench-bin10
mkdir -p $M
start_oracle() {  # src-db-dir name
  mkdir -p $M/$2-db; cp $1/oracle.db* $M/$2-db/; rm -f $M/$2-db/oracle.port
  $BIN/oracle_server/oracle_server --host=127.0.0.1 --port=0 --port_file=$M/$2-db/oracle.port --db=$M/$2-db/oracle.db > $M/$2-db/oracle.log 2>&1 &
  for _ in $(seq 100); do [[ -s $M/$2-db/oracle.port ]] && break; sleep 0.2; done
}
start_oracle /work/exp/j-distill j
start_oracle /work/exp/k-distill/gen2-db gen2
start_oracle /work/exp/k-distill/t8000-db t8000
run() {  # name src port cmdfile
  local name=$1 src=$2 port=$3 cmd=$4
  local dst=$M/$name
  rm -rf $dst; cp -r $src $dst
  local args
  args=$(cat $src/$cmd | sed -e "s#--oracle=[^ ]*#--oracle=127.0.0.1:$port#" -e "s#--out_dir=[^ ]*#--out_dir=$dst#" -e "s#^[^ ]*trainer ##")
  echo "$BIN/trainer/trainer $args --distill_ensemble" > $dst/command_m.txt
  nice $BIN/trainer/trainer $args --distill_ensemble > $dst/trainer_m.log 2>&1
  echo "$? $name $(grep -h 'distillation done\|averaged:' $dst/trainer_m.log | tr '\n' ' ')"
}
J=$(cat $M/j-db/oracle.port); G=$(cat $M/gen2-db/oracle.port); T=$(cat $M/t8000-db/oracle.port)
for s in 0 1 2; do
  run w1-s$s /work/exp/j-distill/w1-s$s $J command2.txt & p=$!
  run w0.5-s$s /work/exp/j-distill/w0.5-s$s $J command2.txt
  wait $p
done
for s in 0 1 2; do
  run gen2-s$s /work/exp/k-distill/gen2-s$s $G command3.txt & p=$!
  run t8000-s$s /work/exp/k-distill/t8000-s$s $T command3.txt
  wait $p
done
pkill -f "oracle_server.*$M" || true
