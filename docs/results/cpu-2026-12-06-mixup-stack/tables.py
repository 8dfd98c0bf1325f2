# The tables of docs/BENCHMARKS.md "Two weak views, distribution alignment
# and a stronger mixup on top of labelled mixup" (python3 tables.py >
# tables.txt): the 8,000-step arms beside this
# file against the same seeds' reference and mixup runs of
# ../cpu-2026-12-06-mixup-8k/ (same VM kind, the same SimCLR checkpoints).
import importlib.util, os, statistics as st
HERE = os.path.dirname(os.path.abspath(__file__))
# runs, report, acc, first_round_ids and stats: the 8,000-step folder's helpers.
_spec = importlib.util.spec_from_file_location(
    'mixup_8k_tables', os.path.join(os.path.dirname(HERE), 'cpu-2026-12-06-mixup-8k', 'tables.py'))
_t8 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_t8)
runs, report, acc, first_round_ids, stats = _t8.runs, _t8.report, _t8.acc, _t8.first_round_ids, _t8.stats
FOLDER = os.path.basename(HERE)


def class_means(arm, seeds):
    names = report(arm[seeds[0]])['class_names']
    pc = [report(arm[s])['per_class_accuracy'] for s in seeds]
    return ' '.join(f'{n[:7]} {100 * st.mean(p[i] for p in pc):.1f}' for i, n in enumerate(names))


def main():
    arms = [('reference', runs('cpu-2026-12-06-mixup-8k/ref8k_*')),
            ('mixup', runs('cpu-2026-12-06-mixup-8k/mix8k_*')),
            ('mixup + two views', runs(f'{FOLDER}/mixv2_8k_s*')),
            ('mixup + alignment', runs(f'{FOLDER}/mixda_8k_s*')),
            ('mixup, alpha 2', runs(f'{FOLDER}/mixa2_8k_s*')),
            ('mixup, alpha 0.4', runs(f'{FOLDER}/mixa04_8k_s*')),
            ('mixup + lambda_f 0.01', runs(f'{FOLDER}/mixlf01_8k_s*'))]
    full_seeds = set(arms[0][1])
    short = [(name, arm) for name, arm in arms if arm and set(arm) != full_seeds]
    arms = [(name, arm) for name, arm in arms if arm and set(arm) == full_seeds]
    seeds = sorted(set.intersection(*(set(arm) for _, arm in arms)))
    for s in seeds:
        ids = {first_round_ids(arm[s]) for _, arm in arms}
        assert len(ids) == 1, f'seed {s}: the arms bought different first 40 labels'
    print('## 8,000 steps, seeds', seeds, '(every arm bought the same first 40 labels per seed)')
    print('| arm | ' + ' | '.join(f's{s}' for s in seeds) + ' | mean | std |')
    print('| --- |' + ' ---: |' * (len(seeds) + 2))
    for name, arm in arms:
        a = [acc(arm[s]) for s in seeds]
        print(f'| {name} | ' + ' | '.join(f'{x:.2f}' for x in a) +
              f' | {st.mean(a):.2f} | {st.stdev(a) if len(a) > 1 else 0:.2f} |')
    mix = dict(arms)['mixup']
    ref = dict(arms)['reference']
    for name, arm in arms[2:]:
        print(f'{name} - mixup:', stats([acc(arm[s]) - acc(mix[s]) for s in seeds]))
        print(f'{name} - reference:', stats([acc(arm[s]) - acc(ref[s]) for s in seeds]))
    print()
    for name, arm in arms:
        print(f'    {name:18}', class_means(arm, seeds))
    for name, arm in arms[2:]:
        rates = [report(arm[s])['steps_per_s'] for s in seeds]
        print(f'{name}: {min(rates):.1f}-{max(rates):.1f} steps/s')
    for name, arm in short:
        partial(dict(arms), name, arm)


def partial(full, name, arm):
    """An arm run on fewer seeds, against the full arms on its own seeds."""
    if not arm:
        return
    seeds = sorted(arm)
    for s in seeds:
        ids = {first_round_ids(a[s]) for a in (arm, full['mixup'], full['reference'])}
        assert len(ids) == 1, f'seed {s}: {name} bought other first 40 labels'
    print()
    print(f'## {name}: seeds {seeds} only (the same first 40 labels per seed)')
    print('| arm | ' + ' | '.join(f's{s}' for s in seeds) + ' | mean |')
    print('| --- |' + ' ---: |' * (len(seeds) + 1))
    for n, a in (('reference', full['reference']), ('mixup', full['mixup']), (name, arm)):
        x = [acc(a[s]) for s in seeds]
        print(f'| {n} | ' + ' | '.join(f'{v:.2f}' for v in x) + f' | {st.mean(x):.2f} |')
    print(f'{name} - mixup:', stats([acc(arm[s]) - acc(full['mixup'][s]) for s in seeds]))


if __name__ == '__main__':
    main()
