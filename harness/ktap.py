#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a test run from its KTAP log and console log.

The KTAP log is what the initramfs' /init wrote to its results port: a
kselftest-runner-style top level ("ok N selftests: kvm: NAME") with each
test's own output, nested KTAP included, behind "# ".  A test that prints
its own KTAP cases is counted case by case; any other test counts once.

Whatever stops the run from being complete is a failure: a missing
end-of-run sentinel, fewer results than the plan, a test whose nested plan
is short, a kernel panic or oops in the console log, a QEMU timeout.

Environment errors (the run is meaningless, not failed): KVM did not load,
the clocksource is not tsc, or KVM's TSC kHz disagrees with the clocksource
calibration by more than KVM's own tolerance (250 ppm).

Prints one line "N passed, N failed, N skipped", then "FAIL: name" for
each failure; a failed test's last diagnostic lines follow it, indented
with "  | ", so that a summary alone says why (CI shows only the tail).  Exit status: 0 all passed, 15 environment error, 16 a test
failed or the run was incomplete.
"""

import argparse
import re
import sys

EXIT_OK = 0
EXIT_ENV = 15
EXIT_TESTS = 16
TSC_TOLERANCE_PPM = 250
SENTINEL = "# harness: end of run"

RESULT_RE = re.compile(r"^(not ok|ok)\s+(\d+)\s*(.*)$")
PLAN_RE = re.compile(r"^1\.\.(\d+)")
START_RE = re.compile(r"^# selftests: kvm: (\S+)")
PANIC_RE = re.compile(
    r"Kernel panic|BUG: |Oops: |general protection fault|"
    r"Unable to handle kernel|kernel BUG at"
)
# (and the e2e's own retry lines, which quote the failed L2 boot's report)
NESTED_CONSOLE_RE = re.compile(r"^(# )*(e2e: l2: |harness: retry: tsc_e2e\.sh: )")
# With --splats, any report of the debug kernel's checkers fails the run too.
SPLAT_RE = re.compile(
    r"WARNING: |KASAN|UBSAN|possible circular locking|inconsistent lock state|"
    r"possible recursive locking|suspicious RCU usage|sleeping function called|"
    r"DEBUG_LOCKS_WARN_ON|INFO: task .* blocked|KFENCE: |list_add corruption|"
    r"list_del corruption|ODEBUG: |lockdep|BUG: |rcu: INFO: .*detected stall"
)


def split_directive(rest):
    """'desc # SKIP why' or '# SKIP desc' -> (desc, directive upper or '')."""
    if rest.startswith("#"):
        m = re.match(r"#\s*(\w+)\s*(.*)$", rest)
        return (m.group(2).strip(), m.group(1).upper()) if m else ("", "")
    if " # " in rest:
        desc, _, directive = rest.partition(" # ")
        return desc.strip(), directive.split()[0].upper() if directive.split() else ""
    return rest.strip(), ""


def classify(kind, directive):
    if directive in ("SKIP",):
        return "skip"
    if kind == "ok" or directive in ("XFAIL", "TODO"):
        return "pass"
    return "fail"


DETAIL_LINES = 12


def last_diagnostics(body):
    """A test's last output lines, its own KTAP plan and results left out."""
    diag = []
    for line in body:
        if PLAN_RE.match(line) or RESULT_RE.match(line) or line.startswith("TAP version"):
            continue
        diag.append(line[2:] if line.startswith("# ") else line)
    return diag[-DETAIL_LINES:]


class Summary:
    def __init__(self):
        self.results = []  # (name, status, note)
        self.env_errors = []
        self.details = {}  # index in results -> diagnostic lines
        self.retries = []  # (name, "harness: retry:" line, that run's last assertion line)

    def add(self, name, status, note="", detail=None):
        if detail and status == "fail":
            self.details[len(self.results)] = detail
        self.results.append((name, status, note))

    def fail(self, name, note, detail=None):
        self.add(name, "fail", note, detail)

    def count(self, status):
        return sum(1 for r in self.results if r[1] == status)


def nested_cases(lines):
    """Leaf results and plan of a test's own KTAP output (prefix stripped)."""
    plan = None
    cases = []
    for line in lines:
        m = PLAN_RE.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            continue
        m = RESULT_RE.match(line)
        if m:
            desc, directive = split_directive(m.group(3))
            cases.append((int(m.group(2)), desc, classify(m.group(1), directive)))
    return plan, cases


def parse_top(lines, summary):
    plan = None
    current = None  # name of the test whose output is being collected
    body = []
    reported = 0
    for line in lines:
        m = START_RE.match(line)
        if m:
            current, body = m.group(1), []
            continue
        if line.startswith("# "):
            body.append(line[2:])
            continue
        if line == "#":
            body.append("")
            continue
        m = PLAN_RE.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            continue
        m = RESULT_RE.match(line)
        if not m:
            continue
        reported += 1
        desc, directive = split_directive(m.group(3))
        name = current or desc.replace("selftests: kvm: ", "") or "test %s" % m.group(2)
        top_status = classify(m.group(1), directive)
        add_test(summary, name, top_status, m.group(3), body)
        current, body = None, []
    if current is not None:
        summary.fail(current, "no result: the run ended inside this test")
    if plan is None:
        summary.fail("run", "no KTAP plan")
    elif reported < plan:
        summary.fail("run", "only %d of %d planned tests reported" % (reported, plan))
    return plan


RETRY_RE = re.compile(r"^harness: retry: (.*)$")
ATTEMPT_RE = re.compile(r"^attempt (\d+): (.*)$")


def add_retries(summary, name, body):
    """The runs of a test that failed before a rerun (harness/guest/init)."""
    why = {}
    for line in body:
        m = ATTEMPT_RE.match(line)
        if m and m.group(2).strip() and "addr2line" not in m.group(2):
            why[m.group(1)] = m.group(2).strip()
    for line in body:
        m = RETRY_RE.match(line)
        if m:
            run = re.search(r"run (\d+) of", m.group(1))
            summary.retries.append((name, m.group(1), why.get(run.group(1) if run else "", "")))


def add_test(summary, name, top_status, rest, body):
    note = rest.split(" # ", 1)[1] if " # " in rest else ""
    add_retries(summary, name, body)
    plan, cases = nested_cases(body)
    detail = last_diagnostics(body)
    if not cases:
        summary.add(name, top_status, note, detail)
        return
    for num, case_desc, status in cases:
        summary.add("%s: %s" % (name, case_desc or num), status)
    if plan is not None and len(cases) < plan:
        summary.fail(name, "short plan: %d of %d cases reported" % (len(cases), plan), detail)
    elif top_status == "fail" and all(c[2] != "fail" for c in cases):
        summary.fail(name, "exited with failure after its cases", detail)
    elif top_status == "fail":
        # Its failed cases are listed; their diagnostics go with the first.
        summary.details.setdefault(len(summary.results) - len(cases) +
                                   [c[2] for c in cases].index("fail"), detail)


def check_environment(lines, summary):
    text = "\n".join(lines)
    m = re.search(r"clocksource: (\S+)", text)
    if not m:
        summary.env_errors.append("the run did not report its clocksource")
    elif m.group(1) != "tsc":
        summary.env_errors.append("clocksource is %s, not tsc" % m.group(1))
    cal = re.findall(r"Refined TSC clocksource calibration: ([0-9.]+) MHz", text)
    if not cal:
        cal = re.findall(r"tsc: Detected ([0-9.]+) MHz", text)
    m = re.search(r"kvm tsc_khz: (\d+)", text)
    if not m:
        summary.env_errors.append("KVM did not load or did not report its TSC kHz")
        return
    if not cal:
        summary.env_errors.append("no TSC calibration in the log")
        return
    clock_khz = float(cal[-1]) * 1000.0
    kvm_khz = int(m.group(1))
    ppm = abs(kvm_khz - clock_khz) / clock_khz * 1e6
    print("tsc calibration: clocksource %.3f kHz, kvm %d kHz, %.2f ppm apart"
          % (clock_khz, kvm_khz, ppm))
    if ppm > TSC_TOLERANCE_PPM:
        summary.env_errors.append(
            "KVM's TSC kHz (%d) and the clocksource's (%.3f) differ by %.0f ppm > %d ppm"
            % (kvm_khz, clock_khz, ppm, TSC_TOLERANCE_PPM))


def read_lines(path):
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [l.rstrip("\r") for l in data.split("\n")]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ktap", required=True, help="results log (ttyS1)")
    ap.add_argument("--console", help="console log (ttyS0)")
    ap.add_argument("--qemu-timeout", action="store_true",
                    help="QEMU was killed by the run's timeout")
    ap.add_argument("--summary", help="also write the summary to this file")
    ap.add_argument("--results", help="write one 'STATUS NAME' line per result here")
    ap.add_argument("--splats", action="store_true",
                    help="fail on any WARNING, KASAN, UBSAN, lockdep or sleep-in-atomic report")
    ap.add_argument("--silence",
                    help="harness/boot.sh's record of a silent test VM (its vCPUs' RIPs)")
    ap.add_argument("--no-env-check", action="store_true",
                    help="skip the clocksource/calibration checks")
    args = ap.parse_args(argv)

    ktap = read_lines(args.ktap)
    console = read_lines(args.console)
    summary = Summary()
    parse_top(ktap, summary)
    if not any(l.strip() == SENTINEL for l in ktap):
        summary.fail("run", "no end-of-run sentinel (guest crashed, hung or was killed)")
    if args.qemu_timeout:
        summary.fail("run", "QEMU timed out")
    silence = read_lines(args.silence)
    if silence:
        rips = []
        for line in silence:
            m = re.match(r"RIP=\S+ (\(\S+\))", line)
            if m and m.group(1) not in rips:
                rips.append(m.group(1))
        summary.fail("run", "%s; vCPUs at %s" % (silence[0], ", ".join(rips) or "?"))
    for line in console:
        # A nested guest's console, copied into the log by the test that
        # ran it (harness/guest/tsc_e2e.sh), is that test's to judge.
        if NESTED_CONSOLE_RE.match(line):
            continue
        if PANIC_RE.search(line):
            summary.fail("run", "kernel reported: " + line.strip()[:160])
            break
    if args.splats:
        splats = [l.strip() for l in console if SPLAT_RE.search(l)]
        for line in splats[:10]:
            summary.fail("run", "debug kernel reported: " + line[:160])
        if len(splats) > 10:
            summary.fail("run", "%d more debug-kernel reports" % (len(splats) - 10))
    if not args.no_env_check:
        check_environment(ktap, summary)

    out = []
    for err in summary.env_errors:
        out.append("ENVIRONMENT ERROR: " + err)
    out.append("%d passed, %d failed, %d skipped"
               % (summary.count("pass"), summary.count("fail"), summary.count("skip")))
    # A rerun is not hidden: each failed run before one is listed, with
    # its last line, whatever the final result.
    for name, what, why in summary.retries:
        out.append("RETRIED: %s%s" % (what, " | " + why if why else ""))
    for i, (name, status, note) in enumerate(summary.results):
        if status == "fail":
            out.append("FAIL: %s%s" % (name, " (%s)" % note if note else ""))
            out.extend("  | " + l for l in summary.details.get(i, []))
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(text)
    if args.results:
        with open(args.results, "w") as f:
            for name, status, _ in summary.results:
                f.write("%s %s\n" % (status, name))
    if summary.env_errors:
        return EXIT_ENV
    return EXIT_TESTS if summary.count("fail") else EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
