"""Turn a bench/run.sh result into tables.

    python bench/summarize.py bench/results/bench-STAMP

Reads STAMP.tsv (one row per server, scenario and round) and STAMP.meta
(machine, versions, settings), prints the per-scenario table (median of the
rounds, errors summed over the rounds, highest peak RSS), the maitre/other
ratios and the server CPU per unit of work with how busy the client core was
("n/a" for results recorded before run.sh measured them), and writes the same as
Markdown to STAMP.md (the README's table).
"""

import csv
import statistics
import sys
import textwrap

SCENARIOS = {
    "hello": "1. hello world, 13 B",
    "flask": "2. Flask hello world",
    "jinja": "3. Flask + Jinja page",
    "json": "4. Flask JSON",
    "django": "5. Django page",
    "big": "6. 1 MiB response",
    "stream": "7. 16 MiB chunked stream",
    "file": "8. file_wrapper",
    "upload": "9. 8 MiB upload, read fully",
    "pipeline": "10. pipelining",
    "slow": "11. slow app (10 ms sleep)",
    "idle": "12. hello + idle connections",
}
SLOW_SECONDS = 0.01
MIB = 1024 * 1024
GIB = 1024 * MIB
# What run.sh's `record` counts per request of the upload scenario (wrk's bytes
# are the responses, a few bytes each).
UPLOAD_BYTES = 8 * MIB
WORK_UNITS = {"req/s": "µs/req", "MiB/s": "ms/GiB"}


def load(prefix):
    meta = {}
    with open(f"{prefix}.meta") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    with open(f"{prefix}.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return meta, rows


def optional_float(row, key):
    """A column that older result files lack: None when missing or empty."""
    text = row.get(key) or ""
    return float(text) if text else None


def cpu_per_unit(row):
    """Server CPU time per unit of work of one run: microseconds per request
    (req/s scenarios) or milliseconds per GiB transferred (MiB/s scenarios)."""
    cpu_ms = optional_float(row, "server_cpu_ms")
    if cpu_ms is None:
        return None
    requests = float(row["requests"])
    if row["unit"] == "req/s":
        return cpu_ms * 1000 / requests if requests else None
    if row["scenario"] == "upload":
        size = requests * UPLOAD_BYTES
    else:
        size = float(row["bytes"])
    return cpu_ms / (size / GIB) if size else None


def summarize(meta, rows):
    """{scenario: {server: cell}} where cell has median/errors/rss/status/notes,
    and cpu_median (server CPU per unit of work) and busy_median (client core
    busy %), None when failed or not recorded."""
    out = {}
    for row in rows:
        cell = out.setdefault(row["scenario"], {}).setdefault(
            row["server"],
            {
                "values": [],
                "cpu": [],
                "busy": [],
                "errors": 0,
                "rss_kb": 0,
                "fail": "",
                "notes": set(),
            },
        )
        if row["status"] != "ok":
            cell["fail"] = cell["fail"] or row["note"]
            continue
        cell["values"].append(float(row["value"]))
        cell["errors"] += int(row["errors"])
        cell["rss_kb"] = max(cell["rss_kb"], int(row["peak_rss_kb"]))
        for key, value in (
            ("cpu", cpu_per_unit(row)),
            ("busy", optional_float(row, "client_busy_pct")),
        ):
            if value is not None:
                cell[key].append(value)
        if row["note"]:
            cell["notes"].add(row["note"])
    for cells in out.values():
        for cell in cells.values():
            ok = cell["values"] and not cell["fail"]
            cell["median"] = statistics.median(cell["values"]) if ok else None
            for key in ("cpu", "busy"):
                values = cell[key] if ok else []
                cell[f"{key}_median"] = statistics.median(values) if values else None
    return out


def fmt(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ratio(mine, other):
    if mine is None or other is None or other <= 0:
        return "n/a"
    return f"{mine / other:.2f}x"


def measured(table):
    """(scenario, cells) for each scenario of the run, in the report's order."""
    return [(s, table[s]) for s in SCENARIOS if s in table]


def ratio_rows(meta, table, others):
    """Per scenario measured: (title, maitre's median over each other server's)."""
    rows = []
    for scenario, cells in measured(table):
        mine = cells.get("maitre", {}).get("median")
        ratios = [ratio(mine, cells.get(s, {}).get("median")) for s in others]
        rows.append((scenario_title(scenario, meta), ratios))
    return rows


def app_alone(meta, scenario):
    """µs of CPU per call of the scenario's app called in a loop without a server
    (bench/app_loop.py, recorded by run.sh), or None."""
    text = meta.get(f"app_loop.{scenario}")
    return float(text) if text else None


def work_rows(meta, table, units):
    """The rows of the server CPU table: per scenario, (title, unit, one text per
    server) for the server CPU per unit of work, then the client core's busy %;
    where the app alone was measured, also the server's own share: CPU per
    request minus the app called in a loop (the unit says that floor)."""
    servers = meta["servers"].split()
    rows = []
    for scenario, cells in measured(table):
        cpu, busy, own = [], [], []
        alone = app_alone(meta, scenario)
        for server in servers:
            cell = cells.get(server, {})
            value = cell.get("cpu_median")
            cpu.append("n/a" if value is None else fmt(value))
            own.append("n/a" if value is None or alone is None else fmt(value - alone))
            value = cell.get("busy_median")
            busy.append("n/a" if value is None else f"{value:.1f}%")
        unit = WORK_UNITS.get(units[scenario], "?")
        rows.append((scenario_title(scenario, meta), unit, cpu))
        if alone is not None:
            rows.append(("", f"- app {fmt(alone)}", own))
        rows.append(("", "client busy", busy))
    return rows


def client_note(meta):
    return (
        "µs/req: server CPU time (user + system, all its processes) per request; "
        "ms/GiB: per GiB transferred; client busy: how busy wrk's core (CPU "
        f"{meta['client_cpu']}) was during the run. When the client core is near "
        "100% busy, the scenario measures the client more than the servers, and "
        "server CPU per unit of work is the figure that compares them. "
        '"- app N": the server\'s own share, its µs/req minus N, the µs of CPU '
        "per call of the same app called in a loop without a server "
        "(bench/app_loop.py, on the server's core, before the rounds)."
    )


def header_lines(meta):
    versions = ", ".join(
        f"{s} {meta.get('version.' + s, '?')}" for s in meta["servers"].split()
    )
    lines = [
        f"date: {meta['date']}; load average at start {meta.get('load', '?')}, "
        f"at the end {meta.get('load_end', '?')}",
        f"machine: {meta['nproc']} CPUs, {meta['cpu']}, {meta['kernel']}, "
        f"Python {meta['python']}, wrk {meta['wrk']}",
        f"servers: {versions} (maitre built from {meta.get('maitre_source', '?')})",
        f"{meta['rounds']} round(s) of {meta['duration']} s, median shown; "
        f"servers on CPU {meta['server_cpu']}, wrk -t1 on CPU {meta['client_cpu']}; "
        f"{meta['threads']} app threads (bjoern: 1)",
        f"connections: {meta['connections']} (file and upload: "
        f"{meta['big_connections']}, slow: {meta['slow_connections']}; idle: "
        f"{meta['connections']} busy + {meta['idle_connections']} idle); "
        f"pipeline depth {meta['pipeline_depth']}; file {meta['file_mib']} MiB",
    ]
    for key, value in meta.items():
        if key.startswith("skipped."):
            lines.append(f"not measured: {key[8:]}: {value}")
    return lines


def scenario_title(scenario, meta):
    title = SCENARIOS[scenario]
    if scenario == "file":
        title += f" {meta['file_mib']} MiB"
    if scenario == "pipeline":
        title += f" x{meta['pipeline_depth']}"
    if scenario == "idle":
        title = f"12. hello + {int(meta['idle_connections']):,} idle"
    return title


def ceiling(meta):
    return int(meta["threads"]) / SLOW_SECONDS


def text_report(meta, table, units):
    servers = meta["servers"].split()
    lines = header_lines(meta) + [""]
    lines.append(
        f"{'scenario':<30} {'server':<9} {'median':>10} {'unit':<6} "
        f"{'errors':>7} {'RSS MiB':>8} {'maitre/x':>9}"
    )
    footnotes = []
    for scenario, cells in measured(table):
        mine = cells.get("maitre", {}).get("median")
        title = scenario_title(scenario, meta)
        for server in servers:
            cell = cells.get(server)
            if cell is None:
                continue
            if cell["median"] is None:
                value, errors, rss = "fails", "", ""
                footnotes.append(f"{scenario} / {server} fails: {cell['fail']}")
            else:
                value = fmt(cell["median"])
                errors = str(cell["errors"])
                rss = f"{cell['rss_kb'] / 1024:.1f}"
            rel = "-" if server == "maitre" else ratio(mine, cell["median"])
            lines.append(
                f"{title:<30} {server:<9} {value:>10} {units[scenario]:<6} "
                f"{errors:>7} {rss:>8} {rel:>9}"
            )
            title = ""
            for note in sorted(cell["notes"]):
                footnotes.append(f"{scenario} / {server}: {note}")
        if scenario == "slow":
            parts = [
                f"{s} {cells[s]['median'] / ceiling(meta):.0%}"
                for s in servers
                if s in cells and cells[s]["median"] is not None
            ]
            lines.append(
                f"{'':<30} of the thread ceiling ({meta['threads']} threads / "
                f"10 ms = {ceiling(meta):.0f} req/s): {', '.join(parts)}"
            )
        lines.append("")
    others = [s for s in servers if s != "maitre"]
    if "maitre" in servers and others:
        lines.append("maitre / other (median over median; >1 means maitre is faster)")
        lines.append(f"{'scenario':<30}" + "".join(f"{s:>10}" for s in others))
        for title, ratios in ratio_rows(meta, table, others):
            lines.append(f"{title:<30}" + "".join(f"{r:>10}" for r in ratios))
        lines.append("")
    lines.append("Server CPU per unit of work (median of the rounds)")
    lines.append(
        f"{'scenario':<30} {'unit':<11}" + "".join(f"{s:>10}" for s in servers)
    )
    for title, unit, texts in work_rows(meta, table, units):
        lines.append(f"{title:<30} {unit:<11}" + "".join(f"{t:>10}" for t in texts))
    lines += textwrap.wrap(client_note(meta), 88) + [""]
    if footnotes:
        lines.append("notes:")
        lines.extend(f"  {note}" for note in footnotes)
    return "\n".join(lines)


def markdown_report(meta, table, units):
    servers = meta["servers"].split()
    others = [s for s in servers if s != "maitre"]
    out = [f"- {line}" for line in header_lines(meta)] + [""]
    out.append("| scenario | unit | " + " | ".join(servers) + " |")
    out.append("|---|---|" + "---:|" * len(servers))
    footnotes = []
    for scenario, cells in measured(table):
        row = []
        for server in servers:
            cell = cells.get(server)
            if cell is None:
                row.append("")
            elif cell["median"] is None:
                footnotes.append(f"{scenario} / {server} fails: {cell['fail']}")
                row.append(f"fails [{len(footnotes)}]")
            else:
                text = fmt(cell["median"])
                if cell["errors"]:
                    text += f" ({cell['errors']} err)"
                row.append(text)
        out.append(
            f"| {scenario_title(scenario, meta)} | {units[scenario]} | "
            + " | ".join(row)
            + " |"
        )
    if "maitre" in servers and others:
        out += ["", "maitre / other (> 1: maitre faster):", ""]
        out.append("| scenario | " + " | ".join(others) + " |")
        out.append("|---|" + "---:|" * len(others))
        for title, ratios in ratio_rows(meta, table, others):
            out.append(f"| {title} | " + " | ".join(ratios) + " |")
    out += ["", "Peak RSS (MiB, VmHWM summed over the server's processes):", ""]
    out.append("| scenario | " + " | ".join(servers) + " |")
    out.append("|---|" + "---:|" * len(servers))
    for scenario, cells in measured(table):
        out.append(
            f"| {scenario_title(scenario, meta)} | "
            + " | ".join(
                f"{cells[s]['rss_kb'] / 1024:.1f}"
                if s in cells and cells[s]["median"] is not None
                else ""
                for s in servers
            )
            + " |"
        )
    if "slow" in table:
        cells = table["slow"]
        parts = [
            f"{s} {cells[s]['median'] / ceiling(meta):.0%}"
            for s in servers
            if s in cells and cells[s]["median"] is not None
        ]
        out += [
            "",
            f"Slow app, share of the thread ceiling ({meta['threads']} threads / "
            f"10 ms = {ceiling(meta):.0f} req/s): {', '.join(parts)}.",
        ]
    out += [
        "",
        "Server CPU per unit of work (median of the rounds):",
        "",
        "| scenario | unit | " + " | ".join(servers) + " |",
        "|---|---|" + "---:|" * len(servers),
    ]
    for title, unit, texts in work_rows(meta, table, units):
        out.append(f"| {title} | {unit} | " + " | ".join(texts) + " |")
    out += ["", client_note(meta)]
    if footnotes:
        out.append("")
        out.extend(f"[{i}] {note}  " for i, note in enumerate(footnotes, 1))
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    meta, rows = load(argv[0])
    table = summarize(meta, rows)
    units = {row["scenario"]: row["unit"] for row in rows}
    print()
    print(text_report(meta, table, units))
    with open(f"{argv[0]}.md", "w") as f:
        f.write(markdown_report(meta, table, units))
    print(f"\nraw results: {argv[0]}.tsv; Markdown table: {argv[0]}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
