#!/bin/sh
# Chromium for the Studio's browser tests, without the right to real-time scheduling.
# As root (a container, CI) Chromium gives its audio threads SCHED_FIFO 99. With a fake
# microphone playing a file, a browser once spun two such threads at 95 % CPU on a 2-core
# machine: every other process starved (load 107), SIGKILL did not get through, and the test
# run stalled for 11 minutes. Without CAP_SYS_NICE the request is refused and Chromium runs
# its audio at normal priority. setpriv comes with util-linux; without it, Chromium as is.
CHROMIUM="${CHROMIUM:-$(command -v chromium || echo /usr/bin/chromium)}"
if command -v setpriv >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    exec setpriv --inh-caps=-sys_nice --bounding-set=-sys_nice "$CHROMIUM" "$@"
fi
exec "$CHROMIUM" "$@"
