#!/bin/bash
# (a) A second distillation generation: the w0.5 students of j-distill become
#     teachers (their student.pt copied over checkpoint.pt) for another
#     4,000-step student with teacher weight 0.5.
# (b) Distillation from the 8,000-step reference runs (d-memory8000),
#     teacher weight 0.5, 4,000 steps.
set -u
K=/work/exp/k-distill
BIN=/work/bench-bin8
mkdir -p $K
start_oracle() {  # db-source-dir name
  cp $1/oracle.db* $K/$2-db/ 2>/dev/null || { mkdir -p $K/$2-db; cp $1/oracle.db* $K/$2-db/; }
  $BIN/oracle_server/oracle_server --host=127.0.0.1 --port=0 --port_file=$K/$2-db/oracle.port --db=$K/$2-db/oracle.db > $K/$2-db/oracle.log 2>&1 &
  for _ in $(seq 100); do [[ -s $K/$2-db/oracle.port ]] && break; sleep 0.2; done
}
start_oracle /work/exp/j-distill gen2
start_oracle /work/exp/d-memory8000 t8000
run() {  # name src port
  local name=$1 src=$2 port=$3
  local dst=$K/$name
  rm -rf $dst; cp -r $src $dst
  if [[ -f $dst/student.pt ]]; then mv $dst/student.pt $dst/checkpoint.pt; fi
  local args
  args=$(cat $src/command.txt | sed -e "s#--oracle=[^ ]*#--oracle=127.0.0.1:$port#" -e "s#--out_dir=[^ ]*#--out_dir=$dst#" -e "s#^[^ ]*trainer ##")
  echo "$BIN/trainer/trainer $args --resume --distill_steps=4000 --teacher_weight=0.5" > $dst/command3.txt
  nice $BIN/trainer/trainer $args --resume --distill_steps=4000 --teacher_weight=0.5 > $dst/trainer3.log 2>&1
  echo "$? $name $(grep -h 'distillation done' $dst/trainer3.log)"
}
G=$(cat $K/gen2-db/oracle.port); T=$(cat $K/t8000-db/oracle.port)
D8=/work/exp/d-memory8000/b100-typiclust-freematch-simclr-steps_8000-lambda_c_1-contrast_memory_240
run gen2-s0 /work/exp/j-distill/w0.5-s0 $G & p1=$!; run t8000-s0 $D8-s0 $T & p2=$!; wait $p1 $p2
run gen2-s1 /work/exp/j-distill/w0.5-s1 $G & p1=$!; run t8000-s1 $D8-s1 $T & p2=$!; wait $p1 $p2
run gen2-s2 /work/exp/j-distill/w0.5-s2 $G & p1=$!; run t8000-s2 $D8-s2 $T & p2=$!; wait $p1 $p2
pkill -f "port_file=$K/" || true
