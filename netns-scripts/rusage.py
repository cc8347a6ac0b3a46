#!/usr/bin/env python3
"""rusage.py OUT CMD...: runs CMD, passes TERM/INT/HUP on to it, and when it ends writes
"user_seconds system_seconds" of CMD and its descendants to OUT (bench.sh, image.sh)."""
import os, signal, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
def forward(sig, _frame):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, forward)
while True:
    try:
        _, status, ru = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
with open(out, "w") as f:
    f.write(f"{ru.ru_utime:.3f} {ru.ru_stime:.3f}\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(128 - code if code < 0 else code)
