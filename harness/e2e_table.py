#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Tables of the end-to-end migrations, from the rows harness/guest/tsc_e2e.sh
prints ("e2e: row key=value ..."), found anywhere in a KTAP or console log.

One table per migration: for each vCPU of the guest, the downtime L1
measured (from the stop, HMP's or, for a live migration, the source's
vm_state_notify trace, to cont), the guest TSC's jump across the migration,
that jump minus L1's time across the same gap (measured in the guest by
ptp_kvm: the TSC's error), the offset L1's debugfs shows before and after,
and kvm-clock minus the TSC across the gap; then the offset spread, the
guest's CLOCK_REALTIME error against L1's, backwards TSC reads between
vCPUs and clocksource watchdog complaints.
"""

import argparse
import re
import sys

ROW_RE = re.compile(r"e2e: row (.*)$")

TITLES = {
    "cpu-hotplug": "a CPU hotplugged into the patched QEMU (x-precise-tsc=on, never run): the new vCPU's offset must be CPU 0's (L1's debugfs)",
    "paused-reset-hotplug-save": "patched QEMU (x-precise-tsc=on), run, stopped, system_reset 3 s later, a CPU hotplugged 3 s after that, both while paused, saved (virsh save's way) -> patched QEMU, cont: the TSC starts at the reset and counts none of the pause (L1's debugfs offsets; both vCPUs in phase)",
    "auto-read-once": "patched QEMU, x-precise-tsc=auto with the recipe, -S, saved before it ran (the read fails: no master clock yet): one warning, not one per vCPU, and the save succeeds",
    "patched-to-stock-refused": "patched QEMU (x-precise-tsc=on) -> {stock}: an old destination must refuse the stream",
    "unknown-flags-refused": "the same stream with a flag no QEMU knows in cpu/tsc_state -> patched QEMU: must be refused",
    "unavailable-flags": "the same stream with every cpu/tsc_state's flags set to TSC_STATE_UNAVAILABLE alone (what x-precise-tsc=auto sends without a state) -> patched QEMU: must load; UNAVAILABLE beside other flags: must be refused",
    "precise-6s": "patched QEMU -> patched QEMU, x-precise-tsc=on, downtime target 6 s (the refused attempt included)",
    "precise-min": "patched QEMU -> patched QEMU, x-precise-tsc=on, the shortest downtime the emulator allows",
    "recipe-min": "patched QEMU (x-precise-tsc=on) -> patched QEMU with x-precise-tsc-recipe=on: vcpu.rst's recipe restores the ioctls' state, shortest downtime",
    "recipe-6s": "patched QEMU -> patched QEMU, both x-precise-tsc-recipe=on (vcpu.rst's recipe, KVM_GET_CLOCK and KVM_VCPU_TSC_OFFSET), downtime target 6 s",
    "precise-cap": "patched QEMU (x-precise-tsc-recipe=on) -> patched QEMU, x-precise-tsc=on, x-precise-tsc-max-downtime=2000, cont 4 s after the load: the TSC and kvm-clock count 2 s",
    "saved-6s": "patched QEMU, HMP stop and then a migration to a file (virsh save's way, not live) -> patched QEMU, x-precise-tsc=on, cont 6 s after the stop: the TSC and kvm-clock count none of it",
    "system-reset": "HMP system_reset of the guest the patched QEMU (x-precise-tsc=on) restored: every vCPU's TSC starts again from 0 at one instant (L1's debugfs offsets; the rebooted guest's TSC when its monitor is ready)",
    "precise-to-off-min": "patched QEMU -> patched QEMU with x-precise-tsc=off: the destination restores the received state all the same (the option says what a source sends)",
    "off-to-stock-min": "patched QEMU with x-precise-tsc=off -> {stock}: no cpu/tsc_state is sent, so the old destination loads the stream (IA32_TSC)",
    "off-paused-resave": "the stream precise-to-off-min saved -> patched QEMU with x-precise-tsc=off, saved again before it ran -> patched QEMU (x-precise-tsc=on), which restores IA32_TSC: it must be the first source's (L1's debugfs offsets; not continued)",
    "stock-6s": "{stock} -> {stock} (IA32_TSC through KVM_SET_MSRS), downtime target 6 s",
    "stock-to-patched-min": "{stock} -> patched QEMU, x-precise-tsc=on: an old source sends no state, legacy restore; the vCPUs must stay in phase",
}


def parse(line):
    m = ROW_RE.search(line)
    if not m:
        return None
    row = {}
    for item in m.group(1).split():
        if "=" in item:
            k, v = item.split("=", 1)
            row[k] = v
    return row if "case" in row else None


def per_vcpu(row, key):
    v = row.get(key, "-")
    return v.split(",") if v not in ("", "-") else []


def table(row, out, stock):
    case = row["case"]
    title = TITLES.get(case, case).format(stock=stock)
    print(f"{case}: {title}", file=out)
    if row.get("downtime_ms", "-") == "-":
        print(f"  {row.get('result', '')}".rstrip(), file=out)
        for k in ("refused", "error"):
            if k in row:
                print(f"  {k}: {row[k]}", file=out)
        print(file=out)
        return
    print(f"  method {row.get('method', '?')}, downtime (L1, stop to cont) "
          f"{row['downtime_ms']} ms", file=out)
    hdr = ("vCPU", "TSC jump", "TSC jump -", "kvm-clock -", "offset before", "offset after")
    sub = ("", "(ms)", "downtime (us)", "TSC (us)", "(cycles)", "(cycles)")
    fmt = "  {:>4}  {:>12}  {:>14}  {:>12}  {:>16}  {:>16}"
    print(fmt.format(*hdr), file=out)
    print(fmt.format(*sub), file=out)
    jumps = per_vcpu(row, "tsc_jump_ms")
    errs = per_vcpu(row, "tsc_err_us")
    kvmc = per_vcpu(row, "kvmclock_tsc_us")
    src = per_vcpu(row, "src_offsets")
    dst = per_vcpu(row, "dst_offsets")
    n = max(len(jumps), len(errs), len(src), len(dst), 1)
    for i in range(n):
        def at(lst):
            return lst[i] if i < len(lst) else "-"
        print(fmt.format(i, at(jumps), at(errs), at(kvmc), at(src), at(dst)), file=out)
    print(f"  offset spread {row.get('offset_spread', '-')} cycles, guest CLOCK_REALTIME "
          f"error vs L1 {row.get('rt_err_us', '-')} us (change across the migration), "
          f"backwards TSC reads {row.get('warps', '-')}, clocksource complaints "
          f"{row.get('complaints', '-')}", file=out)
    print(file=out)


def floats(rows, key):
    out = []
    for r in rows:
        for v in per_vcpu(r, key):
            try:
                out.append(float(v))
            except ValueError:
                pass
    return out


def span(vals, fmt="{:.1f}"):
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if lo == hi else (fmt.format(lo) + " .. " + fmt.format(hi))


def summary(rows, out):
    """One line per case over many runs: the range of each figure."""
    cases = []
    for r in rows:
        if r["case"] not in cases:
            cases.append(r["case"])
    print("case                    runs  downtime (ms)      TSC error (us)            "
          "kvm-clock - TSC (us)      realtime error (us)       spread  backwards  complaints",
          file=out)
    for c in cases:
        rs = [r for r in rows if r["case"] == c and r.get("downtime_ms", "-") != "-"]
        if not rs:
            res = [r.get("result", "?") for r in rows if r["case"] == c]
            print(f"{c:<22} {len(res):>5}  " + ", ".join(f"{x} x{res.count(x)}" for x in sorted(set(res))), file=out)
            continue
        spreads = floats(rs, "offset_spread")
        warps = floats(rs, "warps")
        compl = floats(rs, "complaints")
        print(f"{c:<22} {len(rs):>5}  {span(floats(rs, 'downtime_ms'), '{:.0f}'):<17}  "
              f"{span(floats(rs, 'tsc_err_us')):<24}  {span(floats(rs, 'kvmclock_tsc_us')):<24}  "
              f"{span(floats(rs, 'rt_err_us')):<24}  {span(spreads, '{:.0f}'):>6}  "
              f"{sum(warps):>9.0f}  {span(compl, '{:.0f}'):>10}", file=out)


def two_host(rows, out, runs):
    """make e2e-2host: one markdown table of the cases (harness/guest/tsc_2host.sh's
    rows, B's log), or with runs > 1 the range of each figure per case."""
    print("| case | method | runs | B - A, measured (ms) | its error (us) | "
          "TSC error vs the hosts' clocks (us) | TSC error vs true time (ms) | "
          "kvm-clock - TSC (us) |", file=out)
    print("|---|---|---|---|---|---|---|---|", file=out)
    cases = []
    for r in rows:
        if r["case"] not in cases:
            cases.append(r["case"])
    for c in cases:
        rs = [r for r in rows if r["case"] == c]
        true_ms = [v / 1000 for v in floats(rs, "tsc_err_true_us")]
        print(f"| {c} | {rs[0].get('method', '-')} | {len(rs)} | "
              f"{span(floats(rs, 'hosts_offset_ms'), '{:.3f}')} | "
              f"{span(floats(rs, 'offset_err_us'))} | {span(floats(rs, 'tsc_err_us'))} | "
              f"{span(true_ms, '{:.3f}')} | {span(floats(rs, 'kvmclock_tsc_us'))} |", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", action="store_true",
                    help="one line per case: each figure's range over all the logs")
    ap.add_argument("--stock", default="stock QEMU",
                    help="what the titles call the unpatched QEMU")
    ap.add_argument("--two-host", action="store_true",
                    help="make e2e-2host's rows (B's logs): one table, figures' ranges over the logs")
    ap.add_argument("logs", nargs="+", help="KTAP or console logs with e2e rows")
    args = ap.parse_args()
    rows = []
    for path in args.logs:
        with open(path, errors="replace") as f:
            for line in f:
                r = parse(line)
                if r:
                    rows.append(r)
    if not rows:
        print("no e2e rows found in " + " ".join(args.logs), file=sys.stderr)
        return 1
    if args.two_host:
        two_host([r for r in rows if r["case"].startswith("2host-")], sys.stdout, len(args.logs))
        return 0
    if args.summary:
        summary(rows, sys.stdout)
        return 0
    for r in rows:
        table(r, sys.stdout, args.stock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
