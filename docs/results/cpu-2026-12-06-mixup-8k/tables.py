# The tables of docs/BENCHMARKS.md "Labelled mixup at 8,000 and 16,000 steps"
# (python3 tables.py > tables.txt), from the sweeps beside this file and
# the earlier VM's runs they are set against (the 4,000-step arms of
# ../cpu-2026-12-06-mixup/, the 16,000-step ones of seeds 5 and 6).
import glob, json, os, re, statistics as st
HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.dirname(HERE)

def runs(pattern):
    out = {}
    for d in glob.glob(os.path.join(RES, pattern, 'b100*')):
        if os.path.exists(os.path.join(d, 'report.json')):
            out[int(re.search(r'-s(\d+)$', d).group(1))] = d
    return out

def report(d):
    return json.load(open(os.path.join(d, 'report.json')))

def acc(d):
    return 100 * report(d)['accuracy']

def first_round_ids(d):
    # The ids of the first grant in the purchase journal (round 0's 40).
    text = open(os.path.join(d, 'purchases.log')).read()
    return text.split('intent 0 ')[1].split('\n')[0]

def stats(xs):
    if len(xs) < 2:
        return f'{st.mean(xs):+.2f} (n 1)'
    return (f'{st.mean(xs):+.2f} (sd {st.stdev(xs):.2f}, '
            f'se {st.stdev(xs) / len(xs) ** 0.5:.2f}, n {len(xs)}, {sum(x > 0 for x in xs)} gain)')

def paired(title, ref, mix):
    # Per-seed table of one step count's two arms; the mean difference.
    print(f'## {title}')
    print('| seed | reference | mixup | difference |')
    print('| --- | ---: | ---: | ---: |')
    diffs = []
    seeds = sorted(set(ref) & set(mix))
    for s in seeds:
        a, b = acc(ref[s]), acc(mix[s])
        diffs.append(b - a)
        print(f'| s{s} | {a:.2f} | {b:.2f} | {b - a:+.2f} |')
    if seeds:
        print(f'| mean | {st.mean(acc(ref[s]) for s in seeds):.2f} | '
              f'{st.mean(acc(mix[s]) for s in seeds):.2f} | {st.mean(diffs):+.2f} |')
        print('difference', stats(diffs))
        names = report(ref[seeds[0]])['class_names']
        for name, arm in (('reference', ref), ('mixup', mix)):
            pc = [report(arm[s])['per_class_accuracy'] for s in seeds]
            print('   ', name, ' '.join(f'{n[:7]} {100 * st.mean(p[i] for p in pc):.1f}'
                                    for i, n in enumerate(names)))
    print()


def main():
    # The tables, in the order of tables.txt.
    ref8, mix8 = runs('cpu-2026-12-06-mixup-8k/ref8k_*'), runs('cpu-2026-12-06-mixup-8k/mix8k_*')
    ref16, mix16 = runs('cpu-2026-12-06-mixup-8k/ref16k_*'), runs('cpu-2026-12-06-mixup-8k/mix16k_*')
    ref4 = runs('cpu-2026-12-06-mixup/mixup_ref*')
    mix4 = runs('cpu-2026-12-06-mixup/mixup_[0-9]*')
    # The earlier VM's 16,000-step runs of seeds 5 and 6 (other SimCLR checkpoints).
    old_ref16 = runs('cpu-2026-12-05-linear-probe/steps-16000-seeds-5-6')
    old_mix16 = runs('cpu-2026-12-06-mixup-more/mixup16k_*')
    paired('4,000 steps, earlier VM (cpu-2026-12-06-mixup)', ref4, mix4)
    paired('8,000 steps, this VM', ref8, mix8)
    paired('16,000 steps, this VM', ref16, mix16)
    paired('16,000 steps, earlier VM (seeds 5, 6)', old_ref16, old_mix16)
    for name, arm in (('reference 8k', ref8), ('mixup 8k', mix8), ('reference 16k', ref16), ('mixup 16k', mix16)):
        for s in sorted(arm):
            r = report(arm[s])
            pc = r['per_class_accuracy']
            print(name, f's{s}', 'test accuracy at step',
                  ' '.join(f"{c['step']}: {100 * c['accuracy']:.1f}" for c in r['step_curve']),
                  '| wall s', round(r['wall_time_s']), 'steps/s', round(r['steps_per_s'], 2))
            print('   ', ' '.join(f'{n[:7]} {100 * p:.1f}' for n, p in zip(r['class_names'], pc)))
            print('    first 40 ids as in the 4k runs of this seed:',
                  all(first_round_ids(arm[s]) == first_round_ids(old[s]) for old in (ref4, mix4)),
                  '| as in the other arm at 8k:',
                  first_round_ids(arm[s]) == first_round_ids((mix8 if arm is ref8 or arm is ref16 else ref8)[s])
                  if s in ref8 and s in mix8 else 'n/a')

    print()
    print('## Mean test accuracy along the way (EMA weights; 8,000 steps, this VM)')
    for name, arm in (('reference', ref8), ('mixup', mix8)):
        curves = [{c['step']: 100 * c['accuracy'] for c in report(arm[s])['step_curve']} for s in sorted(arm)]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        print(name, ' '.join(f'{t}: {st.mean(c[t] for c in curves):.2f}' for t in steps))


if __name__ == '__main__':
    main()
