# The tables of docs/BENCHMARKS.md "Labelled mixup at 16,000 steps on five
# more seeds" (python3 tables.py > tables.txt): the 16,000-step pairs beside
# this file, seed 4's pair of ../cpu-2026-12-06-mixup-8k/ (same VM kind and
# cache), the 8,000-step runs of the same seeds there, and the earlier VM's
# 16,000-step pairs of seeds 5 and 6 (other SimCLR checkpoints).
import importlib.util, os, statistics as st
HERE = os.path.dirname(os.path.abspath(__file__))
# runs, report, acc, first_round_ids and stats: the 8,000-step folder's helpers.
_spec = importlib.util.spec_from_file_location(
    'mixup_8k_tables', os.path.join(os.path.dirname(HERE), 'cpu-2026-12-06-mixup-8k', 'tables.py'))
_t8 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_t8)
report, acc, first_round_ids, stats = _t8.report, _t8.acc, _t8.first_round_ids, _t8.stats


def runs(*patterns):
    # seed -> run folder, for the finished runs under the given sweep folders.
    out = {}
    for pattern in patterns:
        out.update(_t8.runs(pattern))
    return out


def class_means(arm, seeds):
    names = report(arm[seeds[0]])['class_names']
    pc = [report(arm[s])['per_class_accuracy'] for s in seeds]
    return ' '.join(f'{n[:7]} {100 * st.mean(p[i] for p in pc):.1f}' for i, n in enumerate(names))


ref16 = runs('cpu-2026-12-06-mixup-16k/ref16k_s*', 'cpu-2026-12-06-mixup-8k/ref16k_*')
mix16 = runs('cpu-2026-12-06-mixup-16k/mix16k_s*', 'cpu-2026-12-06-mixup-8k/mix16k_*')
ref8 = runs('cpu-2026-12-06-mixup-8k/ref8k_*')
mix8 = runs('cpu-2026-12-06-mixup-8k/mix8k_*')
old_ref16 = runs('cpu-2026-12-05-linear-probe/steps-16000-seeds-5-6')
old_mix16 = runs('cpu-2026-12-06-mixup-more/mixup16k_*')

seeds = sorted(set(ref16) & set(mix16))
print('## 16,000 steps, this VM kind (seed 4 from cpu-2026-12-06-mixup-8k), with the same seeds at 8,000')
print('| seed | reference 16k | mixup 16k | difference | reference 8k | mixup 8k | difference 8k |')
print('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
d16, d8 = [], []
for s in seeds:
    a, b, c, d = acc(ref16[s]), acc(mix16[s]), acc(ref8[s]), acc(mix8[s])
    d16.append(b - a)
    d8.append(d - c)
    print(f'| s{s} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {c:.2f} | {d:.2f} | {d - c:+.2f} |')
if seeds:
    m = lambda arm: st.mean(acc(arm[s]) for s in seeds)
    print(f'| mean | {m(ref16):.2f} | {m(mix16):.2f} | {st.mean(d16):+.2f} | '
          f'{m(ref8):.2f} | {m(mix8):.2f} | {st.mean(d8):+.2f} |')
    print('difference at 16k', stats(d16))
    print('difference at 8k, same seeds', stats(d8))
    print('gain from 8k to 16k: reference', stats([acc(ref16[s]) - acc(ref8[s]) for s in seeds]))
    print('gain from 8k to 16k: mixup    ', stats([acc(mix16[s]) - acc(mix8[s]) for s in seeds]))
    print('    reference 16k', class_means(ref16, seeds))
    print('    mixup 16k    ', class_means(mix16, seeds))
    old = sorted(set(old_ref16) & set(old_mix16))
    both = d16 + [acc(old_mix16[s]) - acc(old_ref16[s]) for s in old]
    print('with the earlier VM\'s 16k pairs (seeds', old, '):', stats(both))
print()

print('## Mean test accuracy along the way (EMA weights, 16,000 steps, the seeds above)')
for name, arm in (('reference', ref16), ('mixup', mix16)):
    curves = [{c['step']: 100 * c['accuracy'] for c in report(arm[s])['step_curve']} for s in seeds]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    print(name, ' '.join(f'{t}: {st.mean(c[t] for c in curves):.2f}' for t in steps))
print()

for name, arm in (('reference 16k', ref16), ('mixup 16k', mix16)):
    for s in sorted(arm):
        r = report(arm[s])
        print(name, f's{s}', 'test accuracy at step',
              ' '.join(f"{c['step']}: {100 * c['accuracy']:.1f}" for c in r['step_curve']),
              '| wall s', round(r['wall_time_s']), 'steps/s', round(r['steps_per_s'], 2))
        print('   ', ' '.join(f'{n[:7]} {100 * p:.1f}' for n, p in zip(r['class_names'], r['per_class_accuracy'])))
        if s in ref8 and s in mix8:
            print('    first 40 ids as in both 8k runs of this seed:',
                  first_round_ids(arm[s]) == first_round_ids(ref8[s]) == first_round_ids(mix8[s]))
