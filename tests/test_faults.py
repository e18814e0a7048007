"""Fault tests: the scripts against a local CVAT server that throttles, fails, drops and stalls.

Faults come from FakeCvat.add_fault(). The server records every request with its arrival time,
so retries, waits and the absence of duplicate writes are checked from the server's side.
"""

import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import urllib3

from conftest import ROOT, SECRET_TOKEN, record_output, run_script, script_env
from fake_cvat import FakeCvat, throttled_body

sys.path.insert(0, ROOT)

import create_cvat_task_validation  # noqa: E402
import cvat_common  # noqa: E402
import show_project_subsets  # noqa: E402

CREATE = "create_cvat_task_validation.py"
UPDATE = "update_task_subset.py"
SHOW = "show_project_subsets.py"
POLL_PATH = r"/api/requests/.+"
# Fault kinds a proxy or CVAT produces that a retry may cure: (status, drop the connection).
TRANSIENT_FAULTS = {"502": (502, False), "503": (503, False), "504": (504, False), "drop": (None, True)}


def add_transient_fault(server, method, path, kind, times=2, when="before"):
    status, drop = TRANSIENT_FAULTS[kind]
    body = None if drop else "<html><body><h1>%d Gateway problem</h1></body></html>" % status
    server.add_fault(method, path, status=status, body=body, drop=drop, times=times, when=when)


def tasks_named(server, name):
    return [task for task in server.tasks.values() if task["name"] == name]


def error_lines(result):
    return [line for line in result.err.splitlines() if ": error: " in line]


def gaps(records):
    """Return the seconds between consecutive recorded requests."""
    return [later.time - earlier.time for earlier, later in zip(records, records[1:])]


def in_process_env(monkeypatch, **values):
    """Give an in-process script run a clean CVAT environment plus values."""
    for name in list(os.environ):
        if name.startswith("CVAT_") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", SECRET_TOKEN)
    monkeypatch.setenv("CVAT_RETRY_BACKOFF", "0.05")
    for name, value in values.items():
        monkeypatch.setenv(name, value)


# Transient faults on GET, PATCH and request polls are retried by urllib3.


@pytest.fixture(scope="module")
def throttled_run():
    """Run the create script once against the throttled scenario; return (result, server)."""
    server = FakeCvat(processing_seconds=0.2)
    server.add_token(SECRET_TOKEN, "Bearer", user_id=1, write=True)
    server.seed_scenario("throttled")
    server.start()
    result = run_script(CREATE, "--prefix", "site-b/img/", "--name", "t18", "--timeout", "60", server=server)
    yield result, server
    server.stop()


def test_throttled_run_creates_one_task(throttled_run):
    result, server = throttled_run
    record_output(result.out + result.err)
    assert result.code == 0
    assert len(tasks_named(server, "t18")) == 1
    assert server.tasks[1]["size"] == 1200
    assert "Task #1 created: t18" in result.out


def test_throttled_waits_retry_after(throttled_run):
    result, server = throttled_run
    record_output(result.out + result.err)
    throttled = [record for record in server.requests if record.status == 429]
    assert len(throttled) == 4
    for record in throttled:
        fault = next(fault for fault in server.faults if fault.matches(record))
        seconds = float(fault.headers["Retry-After"])
        later = server.requests[server.requests.index(record) + 1:]
        retry = next(other for other in later if other.method == record.method and other.path == record.path)
        assert retry.time - record.time >= seconds, "%s %s retried too early" % (record.method, record.path)


def test_throttled_create_sent_twice(throttled_run):
    result, server = throttled_run
    record_output(result.out + result.err)
    posts = server.find("POST", r"/api/tasks")
    # The 429 came before CVAT processed anything, so exactly one retry of the create call.
    assert [post.status for post in posts] == [429, 201]
    assert len(server.find("POST", r"/api/tasks/\d+/data")) == 1


@pytest.mark.parametrize("kind", sorted(TRANSIENT_FAULTS))
def test_list_retried_after_transient_fault(cvat, kind):
    cvat.seed_scenario("long-task-list")
    add_transient_fault(cvat, "GET", r"/api/tasks", kind)
    result = run_script(SHOW, "4", "--json", server=cvat)
    lists = cvat.find("GET", r"/api/tasks")
    assert result.code == 0
    assert '"total_frames": 13350' in result.out
    # Two failed attempts at page 1, then pages 1, 2 and 3.
    assert len(lists) == 5
    assert "retrying GET /api/tasks" in result.err


@pytest.mark.parametrize("kind", sorted(TRANSIENT_FAULTS))
def test_patch_retried_after_transient_fault(cvat, kind):
    cvat.seed_scenario("subset-names")
    # The connection drops after CVAT changed the task, so the retry repeats a finished change.
    add_transient_fault(cvat, "PATCH", r"/api/tasks/19", kind, when="after" if kind == "drop" else "before")
    result = run_script(UPDATE, "train", "19", server=cvat)
    assert result.code == 0
    assert result.out == "#19: validation -> train\n"
    assert len(cvat.find("PATCH", r"/api/tasks/19")) == 3
    assert cvat.tasks[19]["subset"] == "train"


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_poll_retried_after_transient_fault(cvat, kind):
    cvat.seed_scenario("bucket-prefix")
    add_transient_fault(cvat, "GET", POLL_PATH, kind, times=3)
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t1", "--timeout", "30", server=cvat)
    assert result.code == 0
    assert len(tasks_named(cvat, "t1")) == 1
    assert cvat.tasks[1]["size"] == 3
    assert len(cvat.find("POST", r"/api/tasks/\d+/data")) == 1


def test_backoff_grows_between_retries(cvat):
    cvat.seed_demo()
    cvat.add_fault("GET", r"/api/projects/4", status=503, times=4)
    result = run_script(SHOW, "4", server=cvat)
    waits = gaps(cvat.find("GET", r"/api/projects/4"))
    assert result.code == 0
    assert len(waits) == 4
    # urllib3 sleeps backoff * 2 ** (n - 1) before retry n from the second one on; backoff 0.05.
    assert waits[1] >= 0.1
    assert waits[2] >= 0.2
    assert waits[3] >= 0.4


@pytest.mark.parametrize(
    "fault, reasons",
    [
        ({"status": 503, "body": "<html><body>Service Unavailable</body></html>"}, ["HTTP 503"]),
        ({"status": 429, "body": throttled_body(0), "headers": {"Retry-After": "0"}}, ["HTTP 429"]),
        # The client sees a closed or a reset connection, depending on timing.
        ({"drop": True}, ["closed the connection", "connection was reset"]),
    ],
    ids=["503", "429", "drop"],
)
def test_persistent_fault_one_line(cvat, fault, reasons):
    cvat.seed_demo()
    cvat.add_fault("GET", r"/api/projects/4", times=None, **fault)
    result = run_script(SHOW, "4", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert len(cvat.find("GET", r"/api/projects/4")) == 1 + cvat_common.RETRY_TOTAL
    assert len(errors) == 1
    assert "GET /api/projects/4" in errors[0]
    assert any(reason in errors[0] for reason in reasons)
    assert "Traceback" not in result.err
    assert "RemoteDisconnected" not in result.err


def test_persistent_poll_fault_names_task(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.add_fault("GET", POLL_PATH, status=503, times=None)
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t1", "--timeout", "30", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "HTTP 503" in errors[0]
    assert "GET /api/requests/" in errors[0]
    assert "task #1 may still be processing" in errors[0]
    # Each poll is retried by urllib3, and polling itself goes on after POLL_FAILURES_MAX failures.
    polls = 1 + cvat_common.POLL_FAILURES_MAX
    assert len(cvat.find("GET", POLL_PATH)) == polls * (1 + cvat_common.RETRY_TOTAL)


def test_poll_survives_transient_failures(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.processing_seconds = 1.0
    failures = cvat_common.POLL_FAILURES_MAX * (1 + cvat_common.RETRY_TOTAL)
    cvat.add_fault("GET", POLL_PATH, status=503, times=failures)
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t1", "--timeout", "60", server=cvat)
    assert result.code == 0
    assert "checking failed" in result.err
    assert "Task #1 created" in result.out


def test_session_retries_through_urllib3():
    config = cvat_common.load_config({"CVAT_URL": "http://127.0.0.1:9", "CVAT_ACCESS_TOKEN": SECRET_TOKEN})
    client = cvat_common.CvatClient(config)
    retry = client.session.get_adapter(config.url).max_retries
    assert isinstance(retry, urllib3.util.retry.Retry)
    assert retry.total == cvat_common.RETRY_TOTAL
    assert set(retry.status_forcelist) >= {429, 502, 503, 504}
    assert "POST" not in retry.allowed_methods
    assert retry.respect_retry_after_header


def test_retry_after_capped():
    retry = cvat_common.make_retry(0.05)
    response = urllib3.HTTPResponse(status=429, headers={"Retry-After": "3600"})
    assert retry.get_retry_after(response) == cvat_common.RETRY_AFTER_MAX


# The create call is never repeated blindly.


@pytest.mark.parametrize(
    "fault, env",
    [
        ({"status": 502, "body": "<html>Bad Gateway</html>"}, {}),
        ({"drop": True}, {}),
        ({"delay": 2.5}, {"CVAT_READ_TIMEOUT": "1"}),
    ],
    ids=["502", "drop", "read-timeout"],
)
def test_lost_create_answer_finds_task(cvat, fault, env):
    cvat.seed_scenario("bucket-prefix")
    # The fault comes after CVAT created the task, so only the response is lost.
    cvat.add_fault("POST", r"/api/tasks", when="after", **fault)
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t2", "--timeout", "30", server=cvat, **env)
    assert result.code == 0
    assert len(tasks_named(cvat, "t2")) == 1
    assert len(cvat.find("POST", r"/api/tasks")) == 1
    assert len(cvat.find("POST", r"/api/tasks/\d+/data")) == 1
    assert "task #1 exists" in result.err
    assert cvat.tasks[1]["size"] == 3


def test_unprocessed_create_checked_then_resent(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.add_fault("POST", r"/api/tasks", status=502, body="<html>Bad Gateway</html>")
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t2", "--timeout", "30", server=cvat)
    calls = [(record.method, record.path) for record in cvat.requests]
    first_post = calls.index(("POST", "/api/tasks"))
    assert result.code == 0
    assert len(tasks_named(cvat, "t2")) == 1
    assert len(cvat.find("POST", r"/api/tasks")) == 2
    # The name lookup sits between the failed and the repeated create call.
    assert calls[first_post + 1] == ("GET", "/api/tasks")
    assert calls[first_post + 2] == ("POST", "/api/tasks")


def test_create_failing_every_time_stops(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.add_fault("POST", r"/api/tasks", status=502, body="<html>Bad Gateway</html>", times=None)
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t2", "--timeout", "30", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert tasks_named(cvat, "t2") == []
    assert len(cvat.find("POST", r"/api/tasks")) == create_cvat_task_validation.CREATE_ATTEMPTS
    assert len(errors) == 1
    assert "HTTP 502" in errors[0]
    assert "no task was created" in errors[0]


# The data call fails: the empty task goes, the script exits 1.


def test_rejected_data_deletes_task(cvat):
    cvat.seed_scenario("bucket-prefix")
    message = "Paths must be relative and canonical: 'site-a//x.jpg'"
    cvat.add_fault("POST", r"/api/tasks/\d+/data", status=400, body={"server_files": [message]})
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t3", "--timeout", "30", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert result.out == ""
    assert len(errors) == 1
    assert message in errors[0]
    assert "HTTP 400" in errors[0]
    assert "task #1 was deleted" in errors[0]
    assert tasks_named(cvat, "t3") == []
    assert len(cvat.find("DELETE", r"/api/tasks/1")) == 1


def test_failed_processing_deletes_task(cvat):
    cvat.seed_scenario("failed-processing")
    result = run_script(CREATE, "--prefix", "site-f/img/", "--name", "t3", "--timeout", "30", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert result.out == ""
    assert len(errors) == 1
    assert "Failed to read the image file 'site-f/img/broken_3.jpg'" in errors[0]
    assert "task #1 was deleted" in errors[0]
    assert tasks_named(cvat, "t3") == []
    assert len(cvat.find("POST", r"/api/tasks/\d+/data")) == 1


def test_unprocessed_data_call_never_resent(cvat):
    cvat.seed_scenario("bucket-prefix")
    # The 502 comes before CVAT saw the call, so no creation request exists to poll.
    cvat.add_fault("POST", r"/api/tasks/\d+/data", status=502, body="<html>Bad Gateway</html>")
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t3", "--timeout", "30", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert len(cvat.find("POST", r"/api/tasks/\d+/data")) == 1
    assert tasks_named(cvat, "t3") == []


# Processing outlasts the timeout or the user presses Ctrl-C.


def test_processing_timeout_names_task(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.processing_seconds = 30
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "t4", "--timeout", "1", server=cvat)
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert "goes on" in errors[0]
    assert cvat.url + "/tasks/1" in errors[0]
    assert len(tasks_named(cvat, "t4")) == 1
    assert cvat.find("DELETE", r".*") == []


def default_sigint():
    # A shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_lines(stream, lines):
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", "replace"))
    lines.put(None)


@pytest.mark.parametrize("slow_poll", [False, True], ids=["between-polls", "during-poll"])
def test_interrupt_while_polling(cvat, slow_poll):
    cvat.seed_scenario("bucket-prefix")
    cvat.processing_seconds = 30
    if slow_poll:
        # Each poll takes a second, so the signal lands while a poll request is open.
        cvat.add_fault("GET", POLL_PATH, delay=1.0, times=None)
    command = [sys.executable, os.path.join(ROOT, CREATE), "--prefix", "site-a/images/", "--name", "t5"]
    process = subprocess.Popen(
        command,
        env=script_env(cvat),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    lines = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(process.stderr, lines), daemon=True)
    reader.start()
    seen = []
    deadline = time.monotonic() + 30
    while not any("queued" in line for line in seen) and time.monotonic() < deadline:
        line = lines.get(timeout=30)
        if line is None:
            break
        seen.append(line)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=20)
    reader.join(timeout=5)
    while not lines.empty():
        line = lines.get()
        if line is not None:
            seen.append(line)
    out = process.stdout.read().decode("utf-8", "replace")
    process.stdout.close()
    process.stderr.close()
    err = "".join(seen)
    record_output(out + err)
    errors = [line for line in seen if ": error: " in line]

    assert any(line.startswith("task #1: queued") for line in seen)
    assert code == 130
    assert "Traceback" not in err
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert "may still be processing" in errors[0]
    assert cvat.url + "/tasks/1" in errors[0]
    assert len(cvat.find("POST", r"/api/tasks/\d+/data")) == 1
    assert len(tasks_named(cvat, "t5")) == 1


# Pagination links that name another host or scheme are not followed.


def test_next_links_elsewhere_not_followed(cvat, monkeypatch, capsys):
    cvat.seed_scenario("long-task-list")
    cvat.public_base = "http://cvat-internal:8080"
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        looked_up.append(host)
        if host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    in_process_env(monkeypatch, CVAT_URL=cvat.url)
    code = cvat_common.run(show_project_subsets.main, ["4", "--json"])
    captured = capsys.readouterr()
    record_output(captured.out + captured.err)
    pages = [record.query["page"][0] for record in cvat.find("GET", r"/api/tasks")]

    assert code == 0
    assert '"total_tasks": 23' in captured.out
    assert pages == ["1", "2", "3"]
    assert set(looked_up) == {"127.0.0.1"}
    for record in cvat.requests:
        assert record.header("Authorization") == "Bearer " + SECRET_TOKEN


@pytest.mark.parametrize("elsewhere", ["other-port", "other-scheme"])
def test_next_links_elsewhere_never_contacted(cvat, elsewhere):
    cvat.seed_scenario("long-task-list")
    decoy = FakeCvat().start()
    try:
        if elsewhere == "other-port":
            cvat.public_base = decoy.url
        else:
            cvat.public_base = cvat.url.replace("http://", "https://")
        result = run_script(SHOW, "4", "--json", server=cvat)
    finally:
        decoy.stop()
    pages = [record.query["page"][0] for record in cvat.find("GET", r"/api/tasks")]
    assert result.code == 0
    assert '"total_tasks": 23' in result.out
    assert pages == ["1", "2", "3"]
    assert len(cvat.requests) == 4
    assert decoy.requests == []


# Unreachable servers: down, unknown name, untrusted certificate.


def closed_port():
    """Return a port on 127.0.0.1 that nothing listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_server_down_one_line():
    url = "http://127.0.0.1:%d" % closed_port()
    result = run_script(SHOW, "4", CVAT_URL=url)
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert url in errors[0]
    assert "connection refused" in errors[0]
    assert "CVAT_URL" in errors[0]
    assert "Traceback" not in result.err


def test_dns_failure_one_line(monkeypatch, capsys):
    looked_up = []

    def no_such_name(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    in_process_env(monkeypatch, CVAT_URL="http://cvat.example.test:8080")
    code = cvat_common.run(show_project_subsets.main, ["4"])
    captured = capsys.readouterr()
    record_output(captured.out + captured.err)
    errors = error_lines(captured)

    assert code == 1
    assert set(looked_up) == {"cvat.example.test"}
    assert len(errors) == 1
    assert "cvat.example.test" in errors[0]
    assert "DNS" in errors[0]
    assert "CVAT_URL" in errors[0]
    assert "no answer from CVAT" not in errors[0]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """Return (certificate, key) paths of a self-signed certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    command = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
    ]
    try:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    except FileNotFoundError:
        pytest.skip("the openssl command is not installed")
    return cert, key


@pytest.fixture
def https_cvat(certificate):
    """A local CVAT server with the demo seed that speaks HTTPS with a self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = FakeCvat(processing_seconds=0.2)
    server.add_token(SECRET_TOKEN, "Bearer", user_id=1, write=True)
    server.seed_demo()
    server.start(ssl_context=context)
    yield server
    server.stop()


def test_untrusted_certificate_one_line(https_cvat):
    result = run_script(SHOW, "4", server=https_cvat, CURL_CA_BUNDLE=None)
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "certificate verify failed" in errors[0]
    assert "REQUESTS_CA_BUNDLE" in errors[0]
    # A certificate that fails the check fails again on every attempt.
    assert "retrying" not in result.err
    assert https_cvat.requests == []


def test_ca_bundle_makes_certificate_trusted(https_cvat, certificate):
    result = run_script(SHOW, "4", server=https_cvat, CURL_CA_BUNDLE=None, REQUESTS_CA_BUNDLE=certificate[0])
    assert result.code == 0
    assert "Total frames: 10,261" in result.out
    assert https_cvat.requests[0].header("Authorization") == "Bearer " + SECRET_TOKEN


def test_missing_ca_bundle_sends_nothing(https_cvat):
    result = run_script(SHOW, "4", server=https_cvat, CURL_CA_BUNDLE=None, REQUESTS_CA_BUNDLE="/nonexistent/ca.pem")
    errors = error_lines(result)
    assert result.code == 2
    assert len(errors) == 1
    assert "REQUESTS_CA_BUNDLE" in errors[0]
    assert "/nonexistent/ca.pem" in errors[0]
    assert "Traceback" not in result.err
    assert https_cvat.requests == []


def test_https_url_for_plain_server(cvat):
    cvat.seed_demo()
    result = run_script(SHOW, "4", server=cvat, CVAT_URL=cvat.url.replace("http://", "https://"))
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "http://" in errors[0]
    assert "certificate" not in errors[0]
    assert "retrying" not in result.err


# Updating several tasks where some fail.


def test_update_failures_named_others_done(cvat):
    cvat.seed_scenario("subset-names")
    add_transient_fault(cvat, "PATCH", r"/api/tasks/21", "503", times=1)
    result = run_script(UPDATE, "train", "19", "99", "22", "21", server=cvat)
    failures = [line for line in result.err.splitlines() if line.startswith("#")]
    errors = error_lines(result)
    assert result.code == 1
    assert cvat.tasks[19]["subset"] == "train"
    assert cvat.tasks[21]["subset"] == "train"
    assert cvat.tasks[22]["subset"] == ""
    assert result.out.splitlines() == ["#19: validation -> train", "#21: (none) -> train"]
    assert [line.split(":", 1)[0] for line in failures] == ["#99", "#22"]
    assert "HTTP 404" in failures[0]
    assert "HTTP 403" in failures[1]
    assert len(errors) == 1
    assert "#99 (HTTP 404)" in errors[0]
    assert "#22 (HTTP 403)" in errors[0]


# Bad input is rejected before anything is sent.


@pytest.mark.parametrize(
    "script, args, env, expected",
    [
        (UPDATE, ["trian", "19"], {}, "did you mean train?"),
        (CREATE, ["--prefix", "site-a/images/", "--subset", "trian"], {}, "did you mean train?"),
        (UPDATE, ["train", "0"], {}, "'0'"),
        (UPDATE, ["train", "-3"], {}, "'-3'"),
        (UPDATE, ["train", "1.5"], {}, "'1.5'"),
        (UPDATE, ["train", "abc"], {}, "'abc'"),
        (UPDATE, ["train", "19,20"], {}, "'19,20'"),
        (SHOW, ["0"], {}, "'0'"),
        (SHOW, ["abc"], {}, "'abc'"),
        (CREATE, ["--prefix", "site-a/images/", "--project-id", "1.5"], {}, "'1.5'"),
        (CREATE, ["--prefix", "site-a/images/", "--image-quality", "0"], {}, "1 to 100"),
        (CREATE, ["--prefix", "site-a/images/", "--image-quality", "101"], {}, "1 to 100"),
        (CREATE, ["--prefix", "site-a/images/", "--segment-size", "0"], {}, "--segment-size"),
        (CREATE, ["--prefix", ""], {}, "prefix is empty"),
        (CREATE, ["--prefix", "s3://datasets/site-a/images/"], {}, "without scheme"),
        (CREATE, ["--prefix", "http://minio.example.test:9000/datasets/site-a/"], {}, "without scheme"),
        (SHOW, ["4"], {"CVAT_URL": "127.0.0.1:8080"}, "add http:// or https://"),
        (SHOW, ["4"], {"CVAT_URL": "http://127.0.0.1:8080/api"}, "without a path"),
        (SHOW, ["4"], {"CVAT_ACCESS_TOKEN": None}, "no token set"),
        (UPDATE, ["train", "19"], {"CVAT_ACCESS_TOKEN": ""}, "no token set"),
    ],
)
def test_bad_input_sends_nothing(cvat, script, args, env, expected):
    cvat.seed_scenario("subset-names")
    result = run_script(script, *args, server=cvat, **env)
    errors = error_lines(result)
    assert result.code == 2
    assert len(errors) == 1
    assert expected in errors[0]
    assert cvat.requests == []


@pytest.mark.parametrize("prefix", ["", "  ", "s3://datasets/site-a/images/", "https://minio.example.test/datasets/"])
def test_bad_minio_prefix_constant(cvat, monkeypatch, capsys, prefix):
    cvat.seed_scenario("bucket-prefix")
    monkeypatch.setattr(create_cvat_task_validation, "MINIO_PREFIX", prefix)
    in_process_env(monkeypatch, CVAT_URL=cvat.url)
    code = cvat_common.run(create_cvat_task_validation.main, [])
    captured = capsys.readouterr()
    record_output(captured.out + captured.err)
    assert code == 2
    assert "prefix" in captured.err
    assert cvat.requests == []


def add_foreign_project(server):
    server.add_organization(3, "other-team", members={2: "owner"})
    server.add_project(5, "Other team project", organization_id=3, owner_id=2)


@pytest.mark.parametrize(
    "scenario, script, args, env, expected",
    [
        ("token-kinds", SHOW, ["4"], {"CVAT_ACCESS_TOKEN": "pat-wrong-5e1f"}, "CVAT_ACCESS_TOKEN"),
        ("token-kinds", SHOW, ["77"], {}, "project 77 not found"),
        ("bucket-prefix", CREATE, ["--prefix", "site-a/images/", "--cloud-storage-id", "9"], {},
         "cloud storage 9 not found or not accessible"),
        ("bucket-prefix", SHOW, ["5"], {}, "HTTP 403"),
        ("organization", SHOW, ["4"], {"CVAT_ORG": "polycube"}, "belongs to organization 'field-team'"),
        ("organization", CREATE, ["--prefix", "site-a/images/"], {"CVAT_ORG": "polycube"},
         "belongs to organization 'field-team'"),
        ("organization", SHOW, ["4"], {"CVAT_ORG": "no-such-team"}, "CVAT_ORG"),
    ],
    ids=["wrong-token", "missing-project", "missing-storage", "no-access", "other-org", "other-org-create",
         "unknown-org"],
)
def test_server_refusal_one_line(cvat, scenario, script, args, env, expected):
    cvat.seed_scenario(scenario)
    add_foreign_project(cvat)
    tasks_before = sorted(cvat.tasks)
    result = run_script(script, *args, server=cvat, **env)
    errors = error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert expected in errors[0]
    assert "Traceback" not in result.err
    assert "pat-wrong-5e1f" not in result.out + result.err
    assert sorted(cvat.tasks) == tasks_before
