# The paired table of docs/BENCHMARKS.md "Mixup of the labelled batch",
# from the sweeps beside this file (python3 mixup_table.py).
import json, glob, os, re, statistics as st
HERE = os.path.dirname(os.path.abspath(__file__))
rec = {3: 82.43, 4: 80.35, 5: 82.02, 6: 80.84, 7: 81.53, 8: 82.22}
runs = {}
for f in glob.glob(os.path.join(HERE, 'mixup_*/b100*/report.json')):
    r = json.load(open(f))
    seed = int(re.search(r'-s(\d+)$', f.split('/')[-2]).group(1))
    arm = 'mix' if 'mixup_alpha' in f else 'ref'
    runs[(arm, seed)] = r
seeds = sorted(s for (a, s) in runs if a == 'mix' and ('ref', s) in runs)
print('| seed | mixup | reference today | reference recorded | mixup - today | mixup - mean of both refs |')
d1, d2 = [], []
for s in seeds:
    m = 100 * runs[('mix', s)]['accuracy']; t = 100 * runs[('ref', s)]['accuracy']
    both = (t + rec[s]) / 2
    d1.append(m - t); d2.append(m - both)
    print(f'| s{s} | {m:.2f} | {t:.2f} | {rec[s]:.2f} | {m-t:+.2f} | {m-both:+.2f} |')
def line(name, xs):
    return f'{name}: mean {st.mean(xs):.2f} sd {st.stdev(xs):.2f} se {st.stdev(xs)/len(xs)**0.5:.2f} n {len(xs)}'
M = [100*runs[('mix',s)]['accuracy'] for s in seeds]; T = [100*runs[('ref',s)]['accuracy'] for s in seeds]; R = [rec[s] for s in seeds]
print(line('mixup', M)); print(line('ref today', T)); print(line('ref recorded', R))
print(line('diff today', d1)); print(line('diff vs both', d2))
names = runs[('mix', seeds[0])]['class_names']
for arm in ('mix', 'ref'):
    pc = [runs[(arm, s)]['per_class_accuracy'] for s in seeds]
    print(arm, ' '.join(f'{n[:7]} {100*st.mean(p[i] for p in pc):.1f}' for i, n in enumerate(names)))
for arm in ('mix','ref'):
    print(arm, 'wall', [round(runs[(arm,s)]['wall_time_s']) for s in seeds], 'steps/s', [round(runs[(arm,s)]['steps_per_s'],2) for s in seeds])
