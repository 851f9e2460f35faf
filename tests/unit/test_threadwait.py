"""The check the idle-daemon tests rely on tells a thread that polls from one that sleeps."""

from __future__ import annotations

import threading

from tests.threadwait import needs_proc_syscall, sleeps_until_woken


@needs_proc_syscall
def test_a_thread_that_polls_every_second_never_counts_as_sleeping_and_one_that_waits_does() -> None:
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            pass

    poller = threading.Thread(target=poll, daemon=True)
    sleeper = threading.Thread(target=stop.wait, daemon=True)
    poller.start()
    sleeper.start()
    try:
        assert not sleeps_until_woken(poller, timeout_s=3.0)
        assert sleeps_until_woken(sleeper)
    finally:
        stop.set()
        poller.join(5)
        sleeper.join(5)
