"""Edge-case tests: interrupts, organization checks, races, output errors and old servers.

Every test runs the real scripts as subprocesses against the local CVAT server on 127.0.0.1
and checks the exit code, the stderr lines and what the server received.
"""

import http.server
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, SECRET_KEY, SECRET_TOKEN, make_server, record_output, run_script, script_env

sys.path.insert(0, ROOT)

import cvat_common  # noqa: E402

CREATE = "create_cvat_task_validation.py"
UPDATE = "update_task_subset.py"
SHOW = "show_project_subsets.py"
SCRIPTS = (CREATE, UPDATE, SHOW)
POLL_PATH = r"/api/requests/.+"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
DEMO_PREFIX = "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"


def error_lines(text):
    return [line for line in text.splitlines() if ": error: " in line]


def writes(server):
    return [record for record in server.requests if record.method in WRITE_METHODS]


def tasks_named(server, name):
    return [task for task in server.tasks.values() if task["name"] == name]


def patched_ids(server):
    return {int(record.path.rsplit("/", 1)[1]) for record in server.find("PATCH", r"/api/tasks/\d+")}


def default_sigint():
    # A shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_lines(stream, lines):
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", "replace"))
    lines.put(None)


class RunningScript:
    """A script started with Popen whose stderr lines are collected by a reader thread."""

    def __init__(self, script, args, env, stdout=subprocess.PIPE):
        command = [sys.executable, os.path.join(ROOT, script)] + [str(arg) for arg in args]
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
            preexec_fn=default_sigint,
        )
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=read_lines, args=(self.process.stderr, self.lines), daemon=True)
        self.reader.start()

    def wait_for_line(self, text, timeout=30):
        """Collect stderr lines until one contains text, and return whether such a line arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return False
            if line is None:
                return False
            self.seen.append(line)
            if text in line:
                return True
        return False

    def finish(self, timeout=30):
        """Wait for the exit and return (exit code, stdout, stderr)."""
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=5)
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                self.seen.append(line)
        out = ""
        if self.process.stdout is not None:
            out = self.process.stdout.read().decode("utf-8", "replace")
            self.process.stdout.close()
        self.process.stderr.close()
        err = "".join(self.seen)
        record_output(out + err)
        return code, out, err


def wait_until(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# Ctrl-C while the update script's PATCHes are in flight.


def test_update_interrupt_names_changed(cvat):
    cvat.seed_scenario("long-task-list")
    cvat.latency = 1.0
    task_ids = list(range(101, 111))
    # Four of the eight parallel reads take longer, so their PATCH would come after the signal.
    cvat.add_fault("GET", r"/api/tasks/10[5-8]", delay=2.0, times=None)
    running = RunningScript(UPDATE, ["test"] + task_ids, script_env(cvat))
    assert wait_until(lambda: cvat.find("PATCH", r"/api/tasks/\d+")), "no PATCH arrived"
    running.process.send_signal(signal.SIGINT)
    code, out, err = running.finish()
    # Wait, so that a PATCH sent after the exit would be recorded before the checks.
    time.sleep(0.5)

    last_line = err.splitlines()[-1]
    match = re.search(r"changed tasks ([\d ]+|none)(?:;|$)", last_line)
    unsent_match = re.search(r"not sent ([\d ]+), run again", last_line)
    changed = set() if not match or match.group(1) == "none" else {int(text) for text in match.group(1).split()}
    unsent = set() if not unsent_match else {int(text) for text in unsent_match.group(1).split()}
    in_test_subset = {task_id for task_id in task_ids if cvat.tasks[task_id]["subset"] == "test"}

    assert code == 130
    assert "Traceback" not in err
    assert len(error_lines(err)) == 1
    assert "interrupted" in last_line
    assert match, last_line
    assert unsent_match, last_line
    assert changed, "no PATCH had arrived before the signal"
    assert changed <= {101, 102, 103, 104}
    assert changed == in_test_subset
    assert changed == patched_ids(cvat)
    assert {105, 106, 107, 108, 109, 110} <= unsent
    assert changed | unsent == set(task_ids)
    assert not (changed & unsent)
    assert patched_ids(cvat) & unsent == set()


# CVAT_ORG checks of the update script.


def test_update_other_org_left_unchanged(cvat):
    cvat.seed_scenario("organization")
    result = run_script(UPDATE, "test", "31", server=cvat, CVAT_ORG="polycube")
    errors = error_lines(result.err)
    assert result.code == 1
    assert len(errors) == 1
    assert "CVAT_ORG" in errors[0]
    assert "left unchanged" in errors[0]
    assert cvat.tasks[31]["subset"] == "train"
    assert cvat.find("PATCH", r"/api/tasks/\d+") == []


def test_update_matching_org_works(cvat):
    cvat.seed_scenario("organization")
    result = run_script(UPDATE, "test", "31", server=cvat, CVAT_ORG="field-team")
    assert result.code == 0
    assert result.out == "#31: train -> test\n"
    assert cvat.tasks[31]["subset"] == "test"


def test_update_unknown_org_sends_nothing(cvat):
    cvat.seed_scenario("organization")
    result = run_script(UPDATE, "test", "31", "32", server=cvat, CVAT_ORG="no-such-team")
    errors = error_lines(result.err)
    assert result.code == 1
    assert len(errors) == 1
    assert "CVAT_ORG" in errors[0]
    assert "Traceback" not in result.err
    assert writes(cvat) == []
    assert cvat.tasks[31]["subset"] == "train"


# Failed updates: one line for one task, per-task lines and a summary for several.


@pytest.mark.parametrize(
    "task_id, token, expected",
    [(99, SECRET_TOKEN, "HTTP 404"), (19, "pat-readonly", "read-only")],
    ids=["missing", "read-only"],
)
def test_update_one_failure_one_line(cvat, task_id, token, expected):
    cvat.seed_scenario("subset-names")
    result = run_script(UPDATE, "train", task_id, server=cvat, CVAT_ACCESS_TOKEN=token)
    lines = result.err.splitlines()
    assert result.code == 1
    assert len(lines) == 1, result.err
    assert lines[0].startswith(UPDATE + ": error: #%d" % task_id)
    assert expected in lines[0]
    assert result.out == ""


@pytest.mark.parametrize(
    "task_ids, token, failed",
    [([19, 99, 22], SECRET_TOKEN, [99, 22]), ([19, 20], "pat-readonly", [19, 20])],
    ids=["missing-and-forbidden", "read-only"],
)
def test_update_failures_listed_then_summary(cvat, task_ids, token, failed):
    cvat.seed_scenario("subset-names")
    result = run_script(UPDATE, "test", *task_ids, server=cvat, CVAT_ACCESS_TOKEN=token)
    lines = result.err.splitlines()
    task_lines = [line for line in lines if line.startswith("#")]
    errors = error_lines(result.err)
    assert result.code == 1
    assert [line.split(":", 1)[0] for line in task_lines] == ["#%d" % task_id for task_id in failed]
    assert all(": failed: " in line for line in task_lines)
    assert len(errors) == 1
    assert len(lines) == len(task_lines) + 1
    assert lines[-1] == errors[0]
    assert "%d of %d tasks were not updated" % (len(failed), len(task_ids)) in errors[0]
    for task_id in failed:
        assert "#%d (HTTP" % task_id in errors[0]


# Two create runs with the same name at the same moment.


def start_race(server, name, extra_args=()):
    """Run two create runs with one name at once and return their (exit code, stdout, stderr)."""
    server.latency = 0.2
    # The server handles each name lookup at once but responds 1.5 s later, so both runs pass
    # the name check before either creates its task.
    server.add_fault("GET", r"/api/tasks", delay=1.5, times=2, when="after", query={"name": None})
    args = ["--prefix", DEMO_PREFIX, "--name", name, "--timeout", "60"] + list(extra_args)
    runs = [RunningScript(CREATE, args, script_env(server)) for _ in range(2)]
    return [run.finish(timeout=60) for run in runs]


def test_concurrent_create_keeps_one(cvat_demo):
    results = start_race(cvat_demo, "race-task")
    codes = sorted(code for code, _, _ in results)
    loser_err = "".join(err for code, _, err in results if code == 1)
    errors = error_lines(loser_err)
    deleted = re.search(r"the empty task #(\d+) was deleted", errors[0]) if errors else None
    remaining = tasks_named(cvat_demo, "race-task")

    assert codes == [0, 1], results
    assert len(remaining) == 1
    assert len(errors) == 1
    assert "another run created task #%d" % remaining[0]["id"] in errors[0]
    assert deleted, errors[0]
    assert int(deleted.group(1)) != remaining[0]["id"]
    assert int(deleted.group(1)) not in cvat_demo.tasks
    assert cvat_demo.find("POST", r"/api/tasks/%s/data" % deleted.group(1)) == []
    assert len(cvat_demo.find("POST", r"/api/tasks")) == 2
    assert len(cvat_demo.find("POST", r"/api/tasks/\d+/data")) == 1
    assert remaining[0]["size"] == 2388


def test_concurrent_create_duplicates_allowed(cvat_demo):
    results = start_race(cvat_demo, "race-task", ["--allow-duplicate-name"])
    remaining = tasks_named(cvat_demo, "race-task")
    assert [code for code, _, _ in results] == [0, 0], results
    assert len(remaining) == 2
    assert all(task["size"] == 2388 for task in remaining)
    assert cvat_demo.find("DELETE", r".*") == []


# Writing the output fails.


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "script, args",
    [(SHOW, ["4"]), (SHOW, ["4", "--json"]), (UPDATE, ["test", "19"]), (UPDATE, ["test", "14", "17", "19"])],
    ids=["show", "show-json", "update-one", "update-several"],
)
def test_full_stdout_one_line(cvat_demo, script, args):
    with open("/dev/full", "w") as full:
        running = RunningScript(script, args, script_env(cvat_demo), stdout=full)
        code, _, err = running.finish()
    lines = err.splitlines()
    assert code == 1
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(script + ": error: writing the output failed")


# SIGTERM while the create script polls.


def test_create_sigterm_names_task(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.processing_seconds = 30
    args = ["--prefix", "site-a/images/", "--name", "t-term", "--timeout", "60"]
    running = RunningScript(CREATE, args, script_env(cvat))
    queued = running.wait_for_line("task #1: queued")
    running.process.send_signal(signal.SIGTERM)
    code, out, err = running.finish()
    errors = error_lines(err)
    assert queued, err
    assert code == 130
    assert "Traceback" not in err
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert "may still be processing" in errors[0]
    assert out == ""
    assert len(tasks_named(cvat, "t-term")) == 1


# A personal access token against a server older than 2.48.


@pytest.fixture
def old_cvat():
    server = make_server(version="2.30.0", processing_seconds=0.2)
    server.seed_scenario("token-kinds")
    yield server
    server.stop()


OLD_SERVER_RUNS = [
    (SHOW, ["4"]),
    (UPDATE, ["test", "19"]),
    (CREATE, ["--prefix", "site-a/images/", "--name", "old-server", "--timeout", "30"]),
]


@pytest.mark.parametrize("script, args", OLD_SERVER_RUNS, ids=["show", "update", "create"])
def test_old_server_bearer_rejected(old_cvat, script, args):
    result = run_script(script, *args, server=old_cvat)
    errors = error_lines(result.err)
    assert result.code == 1
    assert len(errors) == 1
    assert "set CVAT_TOKEN" in errors[0]
    assert "Traceback" not in result.err
    assert writes(old_cvat) == []


@pytest.mark.parametrize("script, args", OLD_SERVER_RUNS, ids=["show", "update", "create"])
def test_old_server_api_key_works(old_cvat, script, args):
    result = run_script(script, *args, server=old_cvat, CVAT_ACCESS_TOKEN=None, CVAT_TOKEN=SECRET_KEY)
    assert result.code == 0, result
    assert error_lines(result.err) == []


# Create with an unknown CVAT_ORG.


def test_create_unknown_org_writes_nothing(cvat_demo):
    tasks_before = sorted(cvat_demo.tasks)
    args = ["--prefix", DEMO_PREFIX, "--name", "org-check"]
    result = run_script(CREATE, *args, server=cvat_demo, CVAT_ORG="no-such-team")
    errors = error_lines(result.err)
    assert result.code == 1
    assert len(errors) == 1
    assert "CVAT_ORG" in errors[0]
    assert "Traceback" not in result.err
    assert writes(cvat_demo) == []
    assert sorted(cvat_demo.tasks) == tasks_before


# The processing outlasts --timeout.


@pytest.mark.parametrize(
    "env, header",
    [
        ({}, '"Authorization: Bearer $CVAT_ACCESS_TOKEN"'),
        ({"CVAT_ACCESS_TOKEN": None, "CVAT_TOKEN": SECRET_KEY}, '"Authorization: Token $CVAT_TOKEN"'),
    ],
    ids=["access-token", "api-key"],
)
def test_create_timeout_gives_delete_command(cvat, env, header):
    cvat.seed_scenario("bucket-prefix")
    cvat.processing_seconds = 30
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t-slow", "--timeout", "1", server=cvat, **env)
    errors = error_lines(result.err)
    assert result.code == 1
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert "CVAT goes on" in errors[0]
    assert "curl -X DELETE -H %s %s/api/tasks/1" % (header, cvat.url) in errors[0]
    assert SECRET_TOKEN not in result.err
    assert SECRET_KEY not in result.err
    assert cvat.find("DELETE", r".*") == []


# Bad task names are rejected before any request.


@pytest.mark.parametrize(
    "name, expected",
    [("   ", "empty"), ("site-a\nval", "line breaks")],
    ids=["blank", "newline"],
)
def test_create_bad_name_sends_nothing(cvat_demo, name, expected):
    result = run_script(CREATE, "--prefix", DEMO_PREFIX, "--name", name, server=cvat_demo)
    errors = error_lines(result.err)
    assert result.code == 2
    assert len(errors) == 1
    assert expected in errors[0]
    assert cvat_demo.requests == []


# Polls that fail a few times do not stop the create script.


@pytest.mark.parametrize(
    "failures, failed_polls",
    [(3, 0), (1 + cvat_common.RETRY_TOTAL + 1, 1)],
    ids=["within-retries", "one-failed-poll"],
)
def test_create_poll_503_recovers(cvat, failures, failed_polls):
    cvat.seed_scenario("bucket-prefix")
    cvat.add_fault("GET", POLL_PATH, status=503, body="<html>Service Unavailable</html>", times=failures)
    result = run_script(
        CREATE, "--prefix", "site-a/images/", "--name", "t-poll", "--timeout", "60", server=cvat, CVAT_RETRY_BACKOFF="0"
    )
    assert result.code == 0, result
    assert "Task #1 created: t-poll" in result.out
    assert result.err.count("checking failed") == failed_polls
    assert len(tasks_named(cvat, "t-poll")) == 1
    assert cvat.tasks[1]["size"] == 3
    assert len(cvat.find("POST", r"/api/tasks/\d+/data")) == 1


# --help names the settings and the exit codes.


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_settings(script):
    result = run_script(script, "--help")
    assert result.code == 0
    assert "CVAT_URL" in result.out
    assert "CVAT_ACCESS_TOKEN" in result.out
    assert "CVAT_TOKEN" in result.out
    assert "exit codes: 0 done, 1 failed, 2 bad usage" in result.out
    assert "130 interrupted" in result.out


# Ctrl-C after the task exists but before its data call.


def test_create_interrupt_before_data_names_task(cvat):
    cvat.seed_scenario("bucket-prefix")
    # Slow name lookups keep the script busy right after the create call returns.
    cvat.add_fault("GET", r"/api/tasks", query={"name": "t-early"}, delay=1.5, times=None)
    args = ["--prefix", "site-a/images/", "--name", "t-early"]
    running = RunningScript(CREATE, args, script_env(cvat))
    created = wait_until(lambda: cvat.find("POST", r"/api/tasks"), timeout=30)
    time.sleep(0.3)
    running.process.send_signal(signal.SIGINT)
    code, out, err = running.finish()
    errors = error_lines(err)
    assert created
    assert code == 130
    assert "Traceback" not in err
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert "DELETE" in errors[0]
    assert cvat.find("POST", r"/api/tasks/\d+/data/?") == []


# Output that cannot encode the task name.


def test_ascii_output_non_ascii_name(cvat_demo):
    args = ["--prefix", DEMO_PREFIX, "--name", "Ünï-🚲", "--dry-run"]
    result = run_script(CREATE, *args, server=cvat_demo, PYTHONIOENCODING="ascii")
    assert result.code == 0
    assert "Traceback" not in result.err
    assert "Dry run" in result.out


# A server at CVAT_URL that returns JSON of another shape.


def start_json_server(body):
    """Start a server on 127.0.0.1 that returns body with status 200 to every request."""
    payload = body.encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = reply

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("body", ["{}", "[1, 2, 3]", '{"id": "x", "results": 5, "count": "n"}'])
@pytest.mark.parametrize(
    "script, args",
    [
        ("show_project_subsets.py", ["4"]),
        ("update_task_subset.py", ["train", "14"]),
        (CREATE, ["--prefix", "a/", "--name", "x"]),
    ],
)
def test_wrong_shape_one_line(body, script, args):
    server = start_json_server(body)
    try:
        url = "http://127.0.0.1:%d" % server.server_address[1]
        result = run_script(script, *args, CVAT_URL=url)
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 1
    assert "Traceback" not in result.err
    assert len(error_lines(result.err)) == 1
