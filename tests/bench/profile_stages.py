"""Where the collector's time goes during a drain, per stage, from a py-spy profile.

    .venv/bin/python tests/bench/profile_stages.py PROFILE.txt --messages N [--cpu-us U]
        [--rate 250]

PROFILE.txt is what `bench_collector.py --only 4 --profile PATH` wrote (`py-spy record
--threads --format raw`: one line per distinct stack, `thread (tid): name;frame;...;frame
count`). Each stack is given to one stage: by its thread, then by the outermost frame of its
stack that names a stage (so paho's socket write under our `MqttLink.ack_all` is the ack's, and
the line building under `Ingest._reading` is line building's). Prints, per stage, its share of
the samples and µs per message: sampled time (samples / rate / N) and, with --cpu-us (the
bench's "CPU per message"), the process's measured CPU split by those shares.

Without `--idle` py-spy samples only threads that are running or runnable (on Linux, by the
thread's state): a thread waiting for the GIL sleeps on a futex and is not sampled, so the
profile shows work; "GIL contention" needs `--gil` (PY_SPY_ARGS), which samples only the
thread holding it (see tests/bench/README.md).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (stage, substrings of a frame's function, matched outermost first within the thread)
_INGEST: list[tuple[str, tuple[str, ...]]] = [
    ("queue hand-over (ingest takes the batch)", ("Inbox.take",)),
    ("control topics", ("Ingest._control",)),
    ("decode/validate", ("Decoder.ours", "Decoder.decode")),
    ("line building", ("reading_lines", "Ingest._entry")),
    ("seq", ("SeqTracker.",)),
    ("spool commit", ("Ingest._commit", "Spool.append")),
    ("dead letters", ("_keep_dead_letters", "Ingest._dead_letter", "MqttLink.publish")),
    ("ack", ("MqttLink.ack",)),  # and ack_all: substrings
    ("board view (readings to the board)", ("Web.observe",)),
    ("alert engine hand-over (ingest thread)", ("AlertService.observe",)),
    ("writer wake-up", ("Writer.notify",)),
]
_WRITER: list[tuple[str, tuple[str, ...]]] = [
    ("writer: HTTP to InfluxDB", ("Sink.write", "Sink.bootstrap")),
    ("writer: roll-up hook", ("note_written",)),
    ("writer: spool reads and deletes", ("Spool.", "Writer._due_in")),
]
_PAHO: list[tuple[str, tuple[str, ...]]] = [
    ("queue hand-over (paho puts)", ("Inbox.put", "Ingest.put", "sink(")),
]
_THREADS: dict[str, tuple[str, list[tuple[str, tuple[str, ...]]]]] = {
    # thread name prefix: (the stage when no frame names one, the frame rules)
    "paho-mqtt-client": ("paho's own work (network thread)", _PAHO),
    "ingest": ("ingest: other (loop, liveness, counters)", _INGEST),
    "writer": ("writer: other (joining, encoding, loop)", _WRITER),
    "alerts": ("alert engine (its thread)", []),
    "stats": ("stats", []),
}
_LINE = re.compile(r"^thread \(\d+\): ([^;]*);(.*) (\d+)$")


def stage_of(thread: str, frames: list[str]) -> str:
    for prefix, (default, rules) in _THREADS.items():
        if thread.startswith(prefix):
            for frame in frames:
                for stage, needles in rules:
                    if any(needle in frame for needle in needles):
                        return stage
            return default
    return f"other threads ({thread or 'unnamed'})"


def stages(profile: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in profile.read_text().splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        thread, stack, count = match.groups()
        counts[stage_of(thread.strip(), stack.split(";"))] += int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--cpu-us", type=float, help="the bench's CPU per message (µs)")
    parser.add_argument("--rate", type=float, default=250.0, help="py-spy samples per second")
    args = parser.parse_args()
    counts = stages(args.profile)
    total = sum(counts.values())
    print(f"{total} samples, {total / args.rate:.1f} thread-seconds sampled\n")
    head = "| stage | share | sampled µs/msg |" + (" CPU µs/msg |" if args.cpu_us else "")
    print(head + "\n|---|---|---|" + ("---|" if args.cpu_us else ""))
    for stage, count in counts.most_common():
        share = count / total
        sampled = count / args.rate / args.messages * 1e6
        cpu = f" {share * args.cpu_us:.1f} |" if args.cpu_us else ""
        print(f"| {stage} | {share:.1%} | {sampled:.1f} |{cpu}")
    cpu_total = f" {args.cpu_us:.0f} |" if args.cpu_us else ""
    print(f"| **total** | 100% | {total / args.rate / args.messages * 1e6:.0f} |{cpu_total}")


if __name__ == "__main__":
    main()
