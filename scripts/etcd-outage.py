#!/usr/bin/env python3
"""What an etcd outage did to one simulated run, from its trace (JSON lines):

    cargo sim replay scenarios/etcd-out-30s-healthy-primary.toml --seed 1 --trace /tmp/t.jsonl
    python3 scripts/etcd-outage.py /tmp/t.jsonl

Prints, in seconds of simulated time: when etcd was paused and resumed (from the scenario's
fault events), when each replica raised and cleared its etcd alarm, and the span in which
users' writes to the primary were refused for want of a lease (the first and last NoLease
refusal after the pause, and the first acknowledged write after the resume)."""
import json
import sys

events = [json.loads(line) for line in open(sys.argv[1])]
t = lambda e: e["time"] / 1e6


def kind(e):
    return next(iter(e["event"])) if isinstance(e["event"], dict) else e["event"]


etcd = [e for e in events if kind(e) == "Fault" and "etcd" in e["event"]["Fault"]["what"]]
pause = next(t(e) for e in etcd if not e["event"]["Fault"]["healed"])
resume = next(t(e) for e in etcd if e["event"]["Fault"]["healed"])
print(f"etcd paused at {pause:.3f} s, resumed at {resume:.3f} s")
for e in events:
    if kind(e) == "EtcdUnreachable":
        r = e["event"]["EtcdUnreachable"]["replica"]
        print(f"  controller/{r} raised the etcd alarm at {t(e):.3f} s ({t(e) - pause:.1f} s into the outage)")
    if kind(e) == "EtcdReachable" and t(e) > pause:
        r = e["event"]["EtcdReachable"]["replica"]
        print(f"  controller/{r} cleared it at {t(e):.3f} s ({t(e) - resume:.1f} s after the resume)")
refused = [t(e) for e in events if kind(e) == "Fail" and e["event"]["Fail"]["reason"] == "NoLease" and t(e) > pause]
ok = [t(e) for e in events if kind(e) == "Ok" and t(e) > resume]
if refused:
    print(f"writes refused (NoLease) from {refused[0]:.3f} s ({refused[0] - pause:.1f} s into the outage)"
          f" to {refused[-1]:.3f} s; first acknowledged write after the resume at {ok[0]:.3f} s"
          f" ({ok[0] - resume:.1f} s after it)")
