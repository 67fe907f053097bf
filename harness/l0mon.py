#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Ask the test VM's QEMU (its HMP monitor on a unix socket) about the L1.

usage: l0mon.py SOCKET [--symbols System.map] COMMAND...

Runs each HMP COMMAND in turn and prints its output.  With --symbols,
every RIP=... is followed by the symbol of the test kernel it lies in
(the test kernels are built without KASLR; a module's address prints
"?").  harness/boot.sh uses it when a run goes silent: the L1's vCPU
registers twice, then an NMI (the L1 panics with a backtrace of every CPU).
Exit status: 0, or 1 if the monitor could not be reached.
"""

import bisect
import re
import socket
import sys
import time

PROMPT = b"(qemu) "


def read_until_prompt(sock, timeout):
    data = b""
    end = time.monotonic() + timeout
    while not data.endswith(PROMPT):
        left = end - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def load_symbols(path):
    addrs, names = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                addrs.append(int(parts[0], 16))
                names.append(parts[2])
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    return [addrs[i] for i in order], [names[i] for i in order]


def symbolize(text, symbols):
    addrs, names = symbols

    def sym(m):
        rip = int(m.group(1), 16)
        i = bisect.bisect_right(addrs, rip) - 1
        if i < 0 or rip - addrs[i] > 0x100000 or rip >= 1 << 64:
            return m.group(0) + " (?)"
        return m.group(0) + " (%s+0x%x)" % (names[i], rip - addrs[i])

    return re.sub(r"RIP=([0-9a-f]{16})", sym, text)


def main(argv):
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    path, args = argv[0], argv[1:]
    symbols = None
    if args[:1] == ["--symbols"]:
        try:
            symbols = load_symbols(args[1])
        except OSError as e:
            print("l0mon: no symbols: %s" % e)
        args = args[2:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        print("l0mon: cannot reach the monitor at %s: %s" % (path, e))
        return 1
    read_until_prompt(sock, 10)
    for cmd in args:
        sock.sendall(cmd.encode() + b"\n")
        out = read_until_prompt(sock, 30).decode("utf-8", "replace").replace("\r", "")
        out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)
        # The monitor echoes the command line first and ends with its prompt.
        lines = out.split("\n")
        if lines and lines[0].strip().endswith(cmd):
            lines = lines[1:]
        text = "\n".join(l for l in lines if l.strip() and l.strip() != "(qemu)")
        if symbols:
            text = symbolize(text, symbols)
        print("(qemu) %s" % cmd)
        if text:
            print(text)
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
