"""Optional py-spy sampling of the server during a phase (`run.py --profile DIR`), with a top-N summary.

py-spy is not a project dependency: install it into the venv by hand (`.venv/bin/pip install py-spy`)
for an investigation. Figures measured while profiling are perturbed (params say "profiled": true).
"""

from __future__ import annotations

import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

from procs import Child, Children, HarnessError, log


def find_py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return str(beside_python) if beside_python.is_file() else shutil.which("py-spy")


class Profiler:
    def __init__(
        self, children: Children, out_dir: Path, extra: list[str] | None = None, rate: int = 100, top: int = 15
    ) -> None:
        exe = find_py_spy()
        if exe is None:
            raise HarnessError("--profile needs py-spy: .venv/bin/pip install py-spy (investigation only)")
        self._exe = exe
        self._children = children
        self.out_dir = out_dir
        self._rate = rate
        self._extra = list(extra or [])  # e.g. --gil (only the thread holding the GIL), --native (C frames)
        self._top = top
        self._running: tuple[str, Child, Path] | None = None
        out_dir.mkdir(parents=True, exist_ok=True)

    def start(self, phase: str, pid: int) -> None:
        self.stop()
        raw = self.out_dir / f"{phase}.collapsed.txt"
        argv = [self._exe, "record", "--pid", str(pid), "--rate", str(self._rate), "--format", "raw"]
        argv += ["--output", str(raw), *self._extra]
        if "--native" not in self._extra:  # py-spy can only read native stacks while pausing the process
            argv.append("--nonblocking")
        child = self._children.start(Child(f"py-spy {phase}", argv, self.out_dir / f"{phase}.py-spy.log"))
        self._running = (phase, child, raw)

    def stop(self) -> None:
        """Stop the current recording (py-spy writes its file on SIGINT) and write its summary."""
        if self._running is None:
            return
        phase, child, raw = self._running
        self._running = None
        child.stop(signal.SIGINT, grace_seconds=30.0)
        self._children.forget(child)
        if not raw.is_file():
            log(f"py-spy wrote no profile for {phase}: {child.log_tail(5)}")
            return
        text = summarize(raw.read_text(errors="replace"), self._top)
        summary = self.out_dir / f"{phase}.summary.txt"
        summary.write_text(text)
        log(f"profile of {phase}: {raw} (summary {summary})\n{text}")


def _function(frame: str) -> str:
    """'name (path/to/file.py:123)' -> 'name (file.py)': aggregate over lines of one function."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({Path(file).name})" if file else name


def summarize(collapsed: str, top: int) -> str:
    """Top functions by own samples and by samples anywhere in the stack, from py-spy's raw format."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (non-idle threads)", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("in stack (inclusive):")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
