"""Start-up cost of the command line: wall time and peak memory of `utils.cli --help` and a tiny `synth`.

    python -m benchmarks.startup [--repo PATH] [--repeats 3]

Each command runs in a fresh process (from `--repo`, default this checkout, so an older checkout can be measured
with this script). Data-only commands should not load TensorFlow: their start-up is what a corpus worker pays.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "cli --help": ["-m", "utils.cli", "--help"],
    "synth (2 scans x 1 slice)": ["-m", "utils.cli", "synth", "--scans", "2", "--slices", "1", "--workers", "1"],
}


def measure(args: list[str], repo: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one run of `python ARGS` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=repo, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repo = Path(args.repo)
    print("| command | median s | peak RSS MB (largest so far) |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in COMMANDS.items():
            cmd = cmd + (["--out", tmp] if "synth" in cmd else [])
            runs = [measure(cmd, repo) for _ in range(args.repeats)]
            secs = sorted(r[0] for r in runs)[len(runs) // 2]
            print(f"| {name} | {secs:.2f} | {max(r[1] for r in runs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
