#!/usr/bin/env python3
"""Benchmark the cvat-scripts against the same jobs written with the official cvat-sdk.

    python3 tests/benchmark.py                    # full run, about 5 minutes on 2 cores
    python3 tests/benchmark.py --quick            # small sizes, one repetition (CI)
    python3 tests/benchmark.py --latency-ms 50 --repetitions 5 --only show,update

The local CVAT test server (tests/fake_cvat.py) runs in this process on 127.0.0.1 with a fixed
latency added to every response. Each job runs two ways, interleaved (ours, SDK, ours, SDK, ...):
the real scripts as subprocesses, and tests/sdk_jobs.py, which does the same job with cvat-sdk.
For every run the benchmark counts the HTTP requests in the server's log and measures the wall
time and the client's own peak RSS (os.wait4 in a small wrapper process). It checks the result
on the server, and for task creation it measures how long after the server finished the job the
client noticed it.

Exit code: 0 when every run succeeded, 1 when a run failed or gave a wrong result. A missed
target is printed but does not change the exit code.
"""

import argparse
import datetime
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

from fake_cvat import FakeCvat  # noqa: E402

# Token the server accepts for every run (Bearer, write access).
TOKEN = "bench-token"
# Organization of the seeded project 4. Only the SDK job is given it, because the script reads it from the project.
ORG_SLUG = "polycube"
# Seeded project, source storage and target storage used by the create and list jobs.
PROJECT_ID = 4
SOURCE_STORAGE_ID = 4
TARGET_STORAGE_ID = 3
# Project created for the show job, and the first id of the tasks made for the show and update jobs.
SHOW_PROJECT_ID = 100
FIRST_TASK_ID = 1000
# Seconds the server takes to process a task's data in the create job.
PROCESSING_SECONDS = 3.0
# Frames per job for every create run: 25,000 keys make 25 jobs, far below the 5,000-job cap.
SEGMENT_SIZE = 1000
IMAGE_QUALITY = 70
# Seconds one client run may take before it is killed and counted as failed.
RUN_TIMEOUT = 900

SCRIPTS = {
    "show": "show_project_subsets.py",
    "create": "create_cvat_task_validation.py",
    "update": "update_task_subset.py",
    "list": "create_cvat_task_validation.py",
}
SDK_JOBS = os.path.join(TESTS, "sdk_jobs.py")

# Sizes per job, with the repetitions cap for a size whose SDK run takes a minute or more.
FULL_SIZES = {
    "show": [(200, None), (2000, None), (20000, 1)],
    "create": [(250, None), (2500, None), (25000, None)],
    "update": [(5, None), (50, None)],
    "list": [(100000, None)],
}
QUICK_SIZES = {
    "show": [(200, None)],
    "create": [(250, None)],
    "update": [(5, None)],
    "list": [(10000, None)],
}
UNITS = {"show": "tasks", "create": "keys", "update": "tasks", "list": "keys"}
JOB_ORDER = ("show", "create", "update", "list")


class Run:
    """Outcome of one client subprocess."""

    def __init__(self, code, out, err, wall, rss_kb, started, ended):
        self.code = code
        self.out = out
        self.err = err
        self.wall = wall
        self.rss_kb = rss_kb
        self.started = started
        self.ended = ended
        self.requests = 0
        self.notice_delay = None
        self.exit_delay = None
        # Whether the update script printed the tasks in the order given; None for other jobs.
        self.in_order = None
        self.problem = None


# Python source of a wrapper that runs a command, then writes its exit status, start and end
# times and peak RSS to the file named in argv[1]. On Linux a child's ru_maxrss from os.wait4 is
# never less than the RSS of the process that forked it, because the kernel carries the forking
# process's memory high-water mark over fork and exec. The wrapper, whose children start at
# about 5 MB, forks the client in place of the benchmark, which contains the whole test server,
# so the figure is the client's own.
RSS_WRAPPER = """
import os, sys, time
started = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
ended = time.monotonic()
with open(sys.argv[1], "w") as report:
    report.write("%d %r %r %d" % (status, started, ended, usage.ru_maxrss))
"""


def exit_code_of(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_client(command, env):
    """Run one client to its end through RSS_WRAPPER and return a Run.

    Wall time runs from the fork to the end of the client, so the wrapper's own start-up is not
    counted. time.monotonic() is the system-wide CLOCK_MONOTONIC on Linux, so the times can be
    compared with the server's request log.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rusage") as report:
        wrapper = [sys.executable, "-S", "-c", RSS_WRAPPER, report.name] + command
        process = subprocess.Popen(
            wrapper, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        try:
            process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        fields = report.read().split()

    if len(fields) != 4:
        return Run(-1, stdout, stderr + "\nkilled after %d s" % RUN_TIMEOUT, RUN_TIMEOUT, 0, 0.0, 0.0)
    status, started, ended, rss_kb = int(fields[0]), float(fields[1]), float(fields[2]), int(fields[3])
    # ru_maxrss is in kilobytes on Linux.
    return Run(exit_code_of(status), stdout, stderr, ended - started, rss_kb, started, ended)


def client_env(server, sdk):
    """Return the environment of a client run: no inherited CVAT settings, the benchmark token."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CVAT_")}
    env.pop("REQUESTS_CA_BUNDLE", None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["CVAT_URL"] = server.url
    env["CVAT_ACCESS_TOKEN"] = TOKEN
    if sdk:
        # The SDK idiom for an organization is a slug on the client. The script finds it from the project.
        env["CVAT_ORG"] = ORG_SLUG
    return env


def start_server(latency):
    server = FakeCvat(latency=latency, processing_seconds=PROCESSING_SECONDS)
    server.seed_demo()
    server.add_token(TOKEN, "Bearer", user_id=1, write=True)
    return server


def image_keys(prefix, count):
    return ["%sframe_%06d.jpg" % (prefix, number) for number in range(1, count + 1)]


class Case:
    """One job at one size: its server state, the commands of both clients and the result checks."""

    def __init__(self, job, size, latency):
        self.job = job
        self.size = size
        self.server = start_server(latency)
        self.runs = {"ours": [], "sdk": []}
        self.update_subsets = ["validation", "test", "train"]
        self.task_ids = []
        self.expected_frames = 0
        # Keys shaped like the team's buckets (site name and date in the folder), because the
        # script's memory use depends on how many digit runs each key has.
        self.prefix = "nrt/Benchmark-Site_2026-02-14/%s-%d/" % (job, size)
        getattr(self, "seed_" + job)()
        self.server.start()

    def seed_show(self):
        self.server.add_project(SHOW_PROJECT_ID, "Benchmark %d tasks" % self.size, organization_id=1)
        subsets = ("train", "validation", "test")
        for index in range(self.size):
            frames = 100 + index % 400
            self.server.add_task(
                FIRST_TASK_ID + index,
                "bench-task-%06d" % index,
                project_id=SHOW_PROJECT_ID,
                subset=subsets[index % 3],
                size=frames,
            )
            self.expected_frames += frames

    def seed_create(self):
        self.server.add_objects(SOURCE_STORAGE_ID, image_keys(self.prefix, self.size))

    def seed_update(self):
        for index in range(self.size):
            self.server.add_task(
                FIRST_TASK_ID + index, "bench-task-%06d" % index, project_id=PROJECT_ID, subset="train", size=100
            )
            self.task_ids.append(FIRST_TASK_ID + index)
        # A fixed shuffle, so that "reported in the order given" is not the same as sorted by id.
        random.Random(self.size).shuffle(self.task_ids)

    def seed_list(self):
        self.seed_create()

    def command(self, kind, repetition):
        """Return the command line of one run, where kind is "ours" or "sdk"."""
        if self.job == "show":
            args = [str(SHOW_PROJECT_ID)]
        elif self.job in ("create", "list"):
            args = [
                "--project-id", str(PROJECT_ID),
                "--cloud-storage-id", str(SOURCE_STORAGE_ID),
                "--target-storage-id", str(TARGET_STORAGE_ID),
                "--prefix", self.prefix,
                "--name", self.task_name(kind, repetition),
                "--subset", "validation",
                "--image-quality", str(IMAGE_QUALITY),
                "--segment-size", str(SEGMENT_SIZE),
            ]
            if self.job == "list":
                args.append("--dry-run")
            elif kind == "ours":
                args += ["--timeout", str(RUN_TIMEOUT)]
        else:
            args = [self.update_subset(repetition)] + [str(task_id) for task_id in self.task_ids]

        if kind == "ours":
            return [sys.executable, os.path.join(ROOT, SCRIPTS[self.job])] + args
        sdk_job = "create" if self.job == "list" else self.job
        return [sys.executable, SDK_JOBS, sdk_job] + args

    def task_name(self, kind, repetition):
        return "bench-%s-%d-r%d-%s" % (self.job, self.size, repetition, kind)

    def update_subset(self, repetition):
        # Each run moves every task to a subset other than its current one, so each PATCH changes data.
        return self.update_subsets[repetition % len(self.update_subsets)]

    def run(self, kind, repetition):
        """Run one client against this case's server, count its requests and check its result."""
        self.server.clear_requests()
        result = run_client(self.command(kind, repetition), client_env(self.server, kind == "sdk"))
        result.requests = len(self.server.requests)
        if result.code != 0:
            result.problem = "exit code %d: %s" % (result.code, last_line(result.err))
        else:
            result.problem = getattr(self, "check_" + self.job)(kind, repetition, result)
        self.runs[kind].append(result)
        return result

    def check_show(self, kind, repetition, result):
        expected = "Total frames: {:,}".format(self.expected_frames)
        if expected not in result.out:
            return "the report lacks %r" % expected
        return None

    def check_create(self, kind, repetition, result):
        name = self.task_name(kind, repetition)
        tasks = [task for task in self.server.tasks.values() if task["name"] == name]
        if len(tasks) != 1:
            return "expected one task named %r on the server, found %d" % (name, len(tasks))
        task = tasks[0]
        if task.get("size") != self.size:
            return "task %r has %r frames, expected %d" % (name, task.get("size"), self.size)
        measure_notice(self.server, result, task["id"])
        return None

    def check_update(self, kind, repetition, result):
        subset = self.update_subset(repetition)
        wrong = [task_id for task_id in self.task_ids if self.server.tasks[task_id]["subset"] != subset]
        if wrong:
            return "%d tasks did not get subset %r, e.g. #%d" % (len(wrong), subset, wrong[0])
        printed = [int(number) for number in re.findall(r"^#(\d+):", result.out, re.MULTILINE)]
        result.in_order = printed == self.task_ids
        return None

    def check_list(self, kind, repetition, result):
        expected = "Images: {:,}".format(self.size)
        if expected not in result.out:
            return "the dry-run plan lacks %r" % expected
        writes = [record for record in self.server.requests if record.method != "GET"]
        if writes:
            return "the dry run sent %s %s" % (writes[0].method, writes[0].path)
        return None


def measure_notice(server, result, task_id):
    """Set how long after the server finished the task's creation the client noticed it and exited.

    The client noticed at the first poll of the creation request that reached the server after the
    finish time, so that poll returned "finished".
    """
    # NOTE: reads the test server's private creation state, because FakeCvat has no public
    # accessor for the time a data job finished. Both times come from time.monotonic().
    request = server._creation_requests.get(task_id)
    if request is None:
        return
    finished_at = request["posted_at"] + request["duration"]
    polls = [record for record in server.find("GET", r"/api/requests/.+") if record.time >= finished_at]
    if polls:
        result.notice_delay = polls[0].time - finished_at
    result.exit_delay = result.ended - finished_at


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def median(values):
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def format_number(value, digits=2):
    if value is None:
        return "-"
    return "%.*f" % (digits, value)


def format_requests(runs):
    counts = sorted({run.requests for run in runs})
    if not counts:
        return "-"
    if len(counts) == 1:
        return str(counts[0])
    return "%d-%d" % (counts[0], counts[-1])


class Results:
    """Measured runs of every case, with the table, growth lines, summary lines and target checks."""

    def __init__(self):
        self.cases = []

    def add(self, case):
        self.cases.append(case)

    def find(self, job, size):
        for case in self.cases:
            if case.job == job and case.size == size:
                return case
        return None

    def wall(self, case, kind):
        return median([run.wall for run in case.runs[kind] if not run.problem])

    def ratio(self, case):
        ours, sdk = self.wall(case, "ours"), self.wall(case, "sdk")
        if ours is None or not sdk:
            return None
        return ours / sdk

    def print_table(self):
        header = "%-7s %9s  %-4s %4s %9s %9s %8s %8s %8s %9s" % (
            "job", "size", "impl", "runs", "requests", "wall s", "ours/sdk", "RSS MB", "notice s", "exit s")
        print(header)
        print("-" * len(header))
        for case in self.cases:
            for kind in ("ours", "sdk"):
                runs = case.runs[kind]
                ratio = self.ratio(case) if kind == "ours" else None
                print("%-7s %9s  %-4s %4d %9s %9s %8s %8s %8s %9s" % (
                    case.job,
                    "{:,}".format(case.size),
                    kind,
                    len(runs),
                    format_requests(runs),
                    format_number(self.wall(case, kind)),
                    format_number(ratio, 3),
                    format_number(max_rss_mb(runs), 1),
                    format_number(median([run.notice_delay for run in runs])),
                    format_number(median([run.exit_delay for run in runs])),
                ))
        print()
        print("wall s: median wall time; ours/sdk: ratio of the medians (below 1 means the script is faster);")
        print("RSS MB: largest peak RSS of the client process; notice s: median delay from the server")
        print("finishing the task to the first poll that saw it; exit s: median delay to the client's exit.")

    def print_growth(self):
        print()
        print("Growth with size (requests, median wall s):")
        if all(len([case for case in self.cases if case.job == job]) < 2 for job in JOB_ORDER):
            print("  (one size per job in this run)")
        for job in JOB_ORDER:
            cases = [case for case in self.cases if case.job == job]
            if len(cases) < 2:
                continue
            for kind in ("ours", "sdk"):
                steps = ["{:,} {}: {} req, {} s".format(
                    case.size, UNITS[job], format_requests(case.runs[kind]), format_number(self.wall(case, kind)))
                    for case in cases]
                print("  %-6s %-4s %s" % (job, kind, " -> ".join(steps)))

    def print_summary(self):
        print()
        for case in self.cases:
            print("%s %s %s: ours %s req, sdk %s req, wall ratio %s" % (
                case.job, "{:,}".format(case.size), UNITS[case.job],
                format_requests(case.runs["ours"]), format_requests(case.runs["sdk"]),
                format_number(self.ratio(case), 3)))

    def check_targets(self):
        """Print each target as met, missed or not measured, and return the (name, state, detail) rows."""
        print()
        print("Targets:")
        outcomes = [
            self.target_show(),
            self.target_create(),
            self.target_update(),
            self.target_list(),
        ]
        for name, state, detail in outcomes:
            print("  %-7s %-58s %s" % (state, name, detail))
        return outcomes

    def speedup(self, case):
        ratio = self.ratio(case)
        return None if not ratio else 1.0 / ratio

    def target_show(self):
        name = "show 2,000 tasks: <= 4 requests, >= 20x faster than SDK"
        case = self.find("show", 2000)
        if case is None or not case.runs["ours"]:
            return name, "n/a", "(size not run)"
        requests = max(run.requests for run in case.runs["ours"])
        speedup = self.speedup(case)
        met = requests <= 4 and speedup is not None and speedup >= 20
        return name, "met" if met else "MISSED", "(%d requests, %sx faster)" % (requests, format_number(speedup, 1))

    def target_create(self):
        name = "create 2,500 keys: notice <= 1 s, >= 1.5x faster end to end"
        case = self.find("create", 2500)
        if case is None or not case.runs["ours"]:
            return name, "n/a", "(size not run)"
        delays = [run.notice_delay for run in case.runs["ours"] if run.notice_delay is not None]
        worst = max(delays) if delays else None
        speedup = self.speedup(case)
        met = worst is not None and worst <= 1.0 and speedup is not None and speedup >= 1.5
        return name, "met" if met else "MISSED", "(worst notice %s s, %sx faster)" % (
            format_number(worst), format_number(speedup, 2))

    def target_update(self):
        name = "update 50 tasks: >= 3x faster, output in the order given"
        case = self.find("update", 50)
        if case is None or not case.runs["ours"]:
            return name, "n/a", "(size not run)"
        in_order = all(run.in_order for run in case.runs["ours"])
        speedup = self.speedup(case)
        met = in_order and speedup is not None and speedup >= 3
        return name, "met" if met else "MISSED", "(%sx faster, order %s)" % (
            format_number(speedup, 1), "kept" if in_order else "NOT kept")

    def target_list(self):
        name = "list 100,000 keys (--dry-run): peak RSS < 80 MB"
        case = self.find("list", 100000)
        if case is None or not case.runs["ours"]:
            return name, "n/a", "(size not run)"
        rss = max_rss_mb(case.runs["ours"])
        met = rss is not None and rss < 80
        return name, "met" if met else "MISSED", "(peak RSS %s MB)" % format_number(rss, 1)

    def failures(self):
        return [
            (case, kind, run)
            for case in self.cases
            for kind in ("ours", "sdk")
            for run in case.runs[kind]
            if run.problem
        ]


def max_rss_mb(runs):
    values = [run.rss_kb for run in runs if not run.problem]
    return max(values) / 1024.0 if values else None


def print_machine(args, sizes):
    from importlib import metadata

    print("cvat-scripts benchmark, %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    print("machine: %d CPUs (nproc), %s, Python %s, requests %s, cvat-sdk %s" % (
        os.cpu_count() or 0, platform.platform(terse=True), platform.python_version(),
        metadata.version("requests"), metadata.version("cvat-sdk")))
    print("server: local test server in this process on 127.0.0.1, latency %g ms per request, "
          "processing %g s per task" % (args.latency_ms, PROCESSING_SECONDS))
    print("mode: %s, up to %d repetitions per size, interleaved ours/sdk" % (
        "quick" if args.quick else "full", args.repetitions))
    print()


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Benchmark the cvat-scripts against cvat-sdk on the local test server.")
    parser.add_argument("--quick", action="store_true", help="small sizes and one repetition (under a minute)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="latency added to every response, in ms (default: 20)")
    parser.add_argument("--repetitions", type=int, default=None, help="runs of each client per size (default: 3, 1 with --quick)")
    parser.add_argument("--only", default="", help="comma-separated jobs to run: show, create, update, list (default: all)")
    args = parser.parse_args(argv)
    if args.repetitions is None:
        args.repetitions = 1 if args.quick else 3
    if args.repetitions < 1:
        parser.error("--repetitions must be 1 or more")
    if args.latency_ms < 0:
        parser.error("--latency-ms must be 0 or more")
    args.jobs = [job.strip() for job in args.only.split(",") if job.strip()] or list(JOB_ORDER)
    unknown = [job for job in args.jobs if job not in JOB_ORDER]
    if unknown:
        parser.error("unknown job %r in --only: use show, create, update or list" % unknown[0])
    return args


def main(argv=None):
    args = parse_args(argv)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    print_machine(args, sizes)
    results = Results()
    started = time.monotonic()

    for job in JOB_ORDER:
        if job not in args.jobs:
            continue
        for size, cap in sizes[job]:
            repetitions = min(args.repetitions, cap) if cap else args.repetitions
            note = " (capped at %d)" % cap if cap and cap < args.repetitions else ""
            print("%s {:,} %s: %d repetition%s%s".format(size) % (
                job, UNITS[job], repetitions, "" if repetitions == 1 else "s", note), flush=True)
            case = Case(job, size, args.latency_ms / 1000.0)
            try:
                for repetition in range(repetitions):
                    for kind in ("ours", "sdk"):
                        run = case.run(kind, repetition)
                        print("  %-4s run %d: %6.2f s, %5d requests%s" % (
                            kind, repetition + 1, run.wall, run.requests,
                            ", FAILED: " + run.problem if run.problem else ""), flush=True)
            finally:
                case.server.stop()
            results.add(case)

    print()
    print("Total benchmark time: %.0f s" % (time.monotonic() - started))
    print()
    results.print_table()
    results.print_growth()
    results.print_summary()
    results.check_targets()

    failures = results.failures()
    if failures:
        print()
        for case, kind, run in failures:
            print("FAILED: %s %d %s: %s" % (case.job, case.size, kind, run.problem))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
