"""What the access log costs in instructions: callgrind Ir per request of maitre's
hello world with the access log off and to a file, and where the difference goes.

    python bench/investigations/observe_ir.py     # REQUESTS=1000 CONNECTIONS=8
    VARIANTS=off,log THREADS=4 python bench/investigations/observe_ir.py

bench/investigations/observe.sh measures CPU time, which a shared machine makes
noisy; instruction counts do not depend on the load. Each variant runs the server
under callgrind as bench/profile.py does (WARMUP then REQUESTS requests, and again
with 2 x REQUESTS; the difference divided by REQUESTS is the cost of one request,
user space only: the write() of a batch of lines counts as a system call, not as
instructions), with PYTHONHASHSEED=0 so that every run hashes alike.
Prints Ir per request by object for each variant, then the functions whose cost
differs most between the first variant and each other one. Files are kept in
bench/results/observe-ir-<time>/ (PROFILE_DIR=<that directory> reuses them).
"""

import importlib.util
import os
import sys
import time
from collections import Counter

# bench/, where profile.py lives
BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("bench_profile", f"{BENCH}/profile.py")
prof = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prof)

VARIANTS = os.environ.get("VARIANTS", "off,log").split(",")


def env_for(variant, outdir):
    env = {"ACCESS_LOG": "", "METRICS_LISTEN": ""}
    if variant == "log":
        env["ACCESS_LOG"] = os.path.join(outdir, "access.log")
    elif variant != "off":
        raise SystemExit(f"unknown variant {variant!r} (off, log)")
    return env


def measure(variant, outdir):
    """(by_obj, by_fn) Ir per request for one variant."""
    vdir = os.path.join(outdir, variant)
    os.makedirs(vdir, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("ACCESS_LOG", "METRICS_LISTEN")}
    os.environ.update(env_for(variant, vdir))
    try:
        return prof.measured(prof.callgrind_server, "maitre", "hello", vdir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main():
    # Python's string hashes are salted per process: dict lookups then cost more in
    # one run than in another (hundreds of Ir per request of noise between variants).
    os.environ.setdefault("PYTHONHASHSEED", "0")
    outdir = os.environ.get("PROFILE_DIR") or os.path.join(
        BENCH, "results", "observe-ir-" + time.strftime("%Y%m%d-%H%M%S")
    )
    os.makedirs(outdir, exist_ok=True)
    results = {v: measure(v, outdir) for v in VARIANTS}
    lines = [
        f"== hello: Ir per request (callgrind), {prof.REQUESTS} requests, "
        f"{prof.CONNECTIONS} connections, THREADS={os.environ.get('THREADS', '4')}"
    ]
    base_name = VARIANTS[0]
    base_total = sum(results[base_name][0].values())
    for v in VARIANTS:
        by_obj, _ = results[v]
        total = sum(by_obj.values())
        cats = Counter()
        for obj, ir in by_obj.items():
            cats[prof.category(obj, "maitre")] += ir
        lines.append(
            f"{v}: {total:,.0f} Ir per request "
            f"({(total - base_total) / base_total:+.1%} vs {base_name})"
        )
        for cat, ir in cats.most_common():
            lines.append(f"  {cat:<38} {ir:>12,.0f}")
    for v in VARIANTS[1:]:
        a, b = results[base_name][1], results[v][1]
        diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
        lines.append(f"functions that differ most, {v} minus {base_name} (Ir/request):")
        for (ob, fn), d in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:25]:
            lines.append(f"  {d:>+10,.0f}  {os.path.basename(ob)}: {fn[:100]}")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(outdir, "report.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
