"""One run per output directory: a second run is refused at once naming the first; a lock left by a killed run is
taken over."""

import signal
import subprocess
import sys
import time

import pytest

from cures._io import RUN_LOCK, run_lock

HOLD = "from cures._io import run_lock; import time\nwith run_lock({path!r}):\n    print('held', flush=True)\n" \
       "    time.sleep(60)\n"


def test_a_second_run_is_refused_and_a_dead_runs_lock_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(path=str(tmp_path))], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=r"another run is writing there \(pid \d+ on ") as info:
            with run_lock(tmp_path):
                pass
        assert str(info.value).startswith(f"output_dir {tmp_path}:") and "\n" not in str(info.value)
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding the lock
        proc.wait()
    t0 = time.perf_counter()
    with run_lock(tmp_path):  # the kernel dropped it with the process
        assert str(__import__("os").getpid()) in (tmp_path / RUN_LOCK).read_text()
    assert time.perf_counter() - t0 < 5


def test_profile_and_train_refuse_a_directory_in_use(tmp_path):
    from test_profile import BASE, cures_profile
    from test_trl_trainer import TINY, cures_train_in_process

    with run_lock(tmp_path / "busy"):
        prof = cures_profile(*BASE, "--output_dir", str(tmp_path / "busy"))
        assert prof.exit_code == 2 and "another cures profile is writing there" in prof.stderr, prof.stderr
        train = cures_train_in_process([*TINY, "--max_steps", "1", "--prompts_per_step", "2", "--rollouts_per_step",
                                        "4", "--output_dir", str(tmp_path / "busy")])
        assert train.exit_code == 2 and "another run is writing there" in train.stderr, train.stderr
