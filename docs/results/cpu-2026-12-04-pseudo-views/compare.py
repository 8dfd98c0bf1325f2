import json, glob, sys, statistics as st
# compare.py NAME=DIR[,DIR] ...: per-seed accuracy, mean, std, per class
names=['T-shirt','Trouser','Pullover','Dress','Coat','Sandal','Shirt','Sneaker','Bag','Ankle boot']
arms={}
for a in sys.argv[1:]:
    n,ds=a.split('=')
    runs={}
    for d in ds.split(','):
        for f in glob.glob(d+'/b*-s*/report.json'):
            r=json.load(open(f)); s=int(f.split('-s')[-1].split('/')[0])
            runs[s]=r
    arms[n]=runs
base=list(arms)[0]
for n,runs in arms.items():
    seeds=sorted(runs); acc=[runs[s]['accuracy']*100 for s in seeds]
    line=f"{n:30s} "+' '.join(f"s{s}={a:.2f}" for s,a in zip(seeds,acc))+f" mean {st.mean(acc):.2f} std {st.stdev(acc) if len(acc)>1 else 0:.2f}"
    if n!=base:
        d=[runs[s]['accuracy']*100-arms[base][s]['accuracy']*100 for s in seeds if s in arms[base]]
        if len(d)>1: line+=f" | diff {st.mean(d):+.2f} se {st.stdev(d)/len(d)**0.5:.2f} per seed "+' '.join(f"{x:+.2f}" for x in d)
    print(line)
    pc=[st.mean(runs[s]['per_class_accuracy'][i]*100 for s in seeds) for i in range(10)]
    print('   per class: '+' | '.join(f"{p:.1f}" for p in pc))
    # predicted totals
    tot=[0]*10
    for s in seeds:
        c=runs[s]['confusion']
        for i in range(10):
            for j in range(10): tot[j]+=c[i][j]
    print('   predicted per class (mean): '+' '.join(str(round(t/len(seeds))) for t in tot))
    steps=[runs[s].get('steps_per_s') for s in seeds]; wall=[runs[s].get('wall_time_s') for s in seeds]
    print('   steps/s',steps,'wall',wall)
