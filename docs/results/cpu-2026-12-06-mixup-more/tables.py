# The tables of docs/BENCHMARKS.md "Mixup at 16,000 steps, and mixup of the
# pseudo-labelled batch" (python3 tables.py), from the sweeps beside this
# file and the earlier runs they are set against: the 16,000-step reference
# (../cpu-2026-12-05-linear-probe/steps-16000-seeds-5-6/) and today's
# 4,000-step reference and labelled-mixup runs (../cpu-2026-12-06-mixup/).
import glob, json, os, re, statistics as st
HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.dirname(HERE)

def load(pattern):
    out = {}
    for f in glob.glob(os.path.join(RES, pattern, 'b100*', 'report.json')):
        seed = int(re.search(r'-s(\d+)$', os.path.basename(os.path.dirname(f))).group(1))
        out[seed] = json.load(open(f))
    return out

def acc(r):
    return 100 * r['accuracy']

def stats(xs):
    if len(xs) < 2:
        return f'{st.mean(xs):+.2f} (n 1)'
    return f'{st.mean(xs):+.2f} (sd {st.stdev(xs):.2f}, se {st.stdev(xs) / len(xs) ** 0.5:.2f}, n {len(xs)})'

ref16 = load('cpu-2026-12-05-linear-probe/steps-16000-seeds-5-6')
mix16 = {**load('cpu-2026-12-06-mixup-more/mixup16k_5'), **load('cpu-2026-12-06-mixup-more/mixup16k_6')}
ref4, mix4 = {}, {}
for d in ('mixup_ref3', 'mixup_ref46', 'mixup_ref57', 'mixup_ref8'):
    ref4.update(load('cpu-2026-12-06-mixup/' + d))
for d in ('mixup_357', 'mixup_46', 'mixup_8'):
    mix4.update(load('cpu-2026-12-06-mixup/' + d))
mixu = {}
for d in sorted(glob.glob(os.path.join(HERE, 'mixu_*'))):
    mixu.update(load('cpu-2026-12-06-mixup-more/' + os.path.basename(d)))

print('## 16,000 steps: labelled mixup against the recorded reference')
print('| seed | reference 16k | mixup 16k | difference | 4k: reference / mixup / difference |')
print('| --- | ---: | ---: | ---: | --- |')
d16, d4 = [], []
for s in sorted(set(ref16) & set(mix16)):
    a, b = acc(ref16[s]), acc(mix16[s])
    c, m = acc(ref4[s]), acc(mix4[s])
    d16.append(b - a); d4.append(m - c)
    print(f'| s{s} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {c:.2f} / {m:.2f} / {m - c:+.2f} |')
print('16k difference', stats(d16), '| 4k difference on the same seeds', stats(d4))
for name, runs in (('reference 16k', ref16), ('mixup 16k', mix16)):
    for s in sorted(runs):
        print(name, f's{s}', 'test accuracy at step',
              ' '.join(f"{c['step']}: {100 * c['accuracy']:.1f}" for c in runs[s]['step_curve']))

print()
print('## 4,000 steps: mixup of the pseudo-labelled batch too, against labelled mixup alone and the reference')
print('| seed | reference | labelled mixup | + unlabelled mixup | - labelled mixup | - reference |')
print('| --- | ---: | ---: | ---: | ---: | ---: |')
dm, dr = [], []
seeds = sorted(set(mixu) & set(mix4) & set(ref4))
for s in seeds:
    r, m, u = acc(ref4[s]), acc(mix4[s]), acc(mixu[s])
    dm.append(u - m); dr.append(u - r)
    print(f'| s{s} | {r:.2f} | {m:.2f} | {u:.2f} | {u - m:+.2f} | {u - r:+.2f} |')
if seeds:
    print('means:', f'reference {st.mean(acc(ref4[s]) for s in seeds):.2f}',
          f'labelled mixup {st.mean(acc(mix4[s]) for s in seeds):.2f}',
          f'+ unlabelled {st.mean(acc(mixu[s]) for s in seeds):.2f}')
    print('against labelled mixup', stats(dm), '| against the reference', stats(dr))
    names = mixu[seeds[0]]['class_names']
    for name, runs in (('reference', ref4), ('labelled mixup', mix4), ('+ unlabelled', mixu)):
        pc = [runs[s]['per_class_accuracy'] for s in seeds]
        print(name, ' '.join(f'{n[:7]} {100 * st.mean(p[i] for p in pc):.1f}' for i, n in enumerate(names)))
        print('  wall s', [round(runs[s]['wall_time_s']) for s in seeds],
              'steps/s', [round(runs[s]['steps_per_s'], 2) for s in seeds])
    for s in seeds:
        same = all(
            open(glob.glob(os.path.join(RES, p, f'b100*-s{s}', 'purchases.log'))[0]).read().split('\nbought 0')[0].split('intent 0 ')[1]
            == open(glob.glob(os.path.join(RES, 'cpu-2026-12-06-mixup-more/mixu_*', f'b100*-s{s}', 'purchases.log'))[0]).read().split('\nbought 0')[0].split('intent 0 ')[1]
            for p in ('cpu-2026-12-06-mixup/mixup_[0-9]*', 'cpu-2026-12-06-mixup/mixup_ref*'))
        print(f's{s} first 40 ids the same in all three arms:', same)
