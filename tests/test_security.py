"""Security tests: the token stays out of every output and goes only to CVAT_URL's origin.

Besides the explicit checks here, conftest's autouse fixture fails any test whose script output
contains a test token.
"""

import glob
import os
import re
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import ROOT, SECRET_KEY, SECRET_TOKEN, make_server, record_output, run_script

sys.path.insert(0, ROOT)

import cvat_common  # noqa: E402
import show_project_subsets  # noqa: E402

CREATE = "create_cvat_task_validation.py"
UPDATE = "update_task_subset.py"
SHOW = "show_project_subsets.py"
# A token the server rejects; distinctive, so that any echo of it is easy to find.
WRONG_TOKEN = "pat-wrong-9d3a6c0b"
# A read-only personal access token: CVAT returns 403 for every write made with it.
READ_ONLY_TOKEN = "pat-readonly-s3cr3t-51c7"


def error_lines(text):
    return [line for line in text.splitlines() if ": error: " in line]


def python_sources():
    """Return the project's Python files: the scripts, cvat_common.py and the tests."""
    paths = glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "tests", "*.py"))
    return sorted(path for path in paths if os.path.abspath(path) != os.path.abspath(__file__))


class RecordingHandler(BaseHTTPRequestHandler):
    """Record each request's method, path and headers, and respond 200 with an empty JSON object."""

    def do_GET(self):
        self.server.received.append((self.command, self.path, dict(self.headers.items())))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PATCH = do_DELETE = do_GET

    def log_message(self, format, *args):
        pass


@pytest.fixture
def other_origin():
    """A recording HTTP server on 127.0.0.2, an origin other than the CVAT server's."""
    server = ThreadingHTTPServer(("127.0.0.2", 0), RecordingHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.url = "http://127.0.0.2:%d" % server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# The token never appears in output.


@pytest.mark.parametrize(
    "script, args",
    [
        (SHOW, ["4"]),
        (UPDATE, ["validation", "19"]),
        (CREATE, ["--prefix", "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/", "--name", "sec"]),
    ],
)
def test_debug_output_hides_token(cvat_demo, script, args):
    result = run_script(script, *args, server=cvat_demo, CVAT_DEBUG="1")
    debug_lines = [line for line in result.err.splitlines() if " -> " in line]
    assert result.code == 0
    assert debug_lines
    assert SECRET_TOKEN not in result.out
    assert SECRET_TOKEN not in result.err
    assert "Authorization" not in result.err
    assert "Bearer" not in result.err


@pytest.mark.parametrize("script, args", [(SHOW, ["4"]), (UPDATE, ["train", "19"]), (CREATE, ["--prefix", "site-a/images/"])])
def test_rejected_token_not_echoed(cvat, script, args):
    cvat.seed_scenario("token-kinds")
    result = run_script(script, *args, server=cvat, CVAT_ACCESS_TOKEN=WRONG_TOKEN, CVAT_DEBUG="1")
    assert result.code == 1
    assert "HTTP 401" in result.err
    assert "CVAT_ACCESS_TOKEN" in result.err
    assert WRONG_TOKEN not in result.out
    assert WRONG_TOKEN not in result.err


def test_api_key_not_echoed(cvat):
    cvat.seed_scenario("token-kinds")
    cvat.tokens.pop(SECRET_KEY)
    result = run_script(SHOW, "4", server=cvat, CVAT_ACCESS_TOKEN=None, CVAT_TOKEN=SECRET_KEY)
    assert result.code == 1
    assert "CVAT_TOKEN" in error_lines(result.err)[0]
    assert SECRET_KEY not in result.out + result.err


def test_exception_text_hides_token(cvat, monkeypatch):
    cvat.seed_scenario("token-kinds")
    monkeypatch.setenv("CVAT_URL", cvat.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", WRONG_TOKEN)
    monkeypatch.delenv("CVAT_TOKEN", raising=False)
    monkeypatch.delenv("CVAT_ORG", raising=False)
    with pytest.raises(cvat_common.CvatError) as caught:
        show_project_subsets.main(["4"])
    error = caught.value
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    record_output(text)
    # The server repeats the rejected header in its 401 body.
    assert WRONG_TOKEN in cvat.requests[-1].header("Authorization")
    assert WRONG_TOKEN not in str(error)
    assert WRONG_TOKEN not in repr(error)
    assert WRONG_TOKEN not in error.message
    assert WRONG_TOKEN not in error.server_message
    assert WRONG_TOKEN not in text


def test_error_built_with_token_is_redacted():
    cvat_common.load_config({"CVAT_URL": "http://127.0.0.1:9", "CVAT_ACCESS_TOKEN": SECRET_TOKEN})
    error = cvat_common.CvatError("server said: Bearer %s is invalid" % SECRET_TOKEN)
    assert SECRET_TOKEN not in str(error)
    assert SECRET_TOKEN not in error.message


def test_no_http_debuglevel_in_code():
    # Setting http.client's debuglevel prints every request header, the token included.
    pattern = re.compile("debug" + "level")
    offenders = [path for path in python_sources() if pattern.search(open(path, encoding="utf-8").read())]
    assert offenders == []


def test_certificate_check_never_disabled():
    pattern = re.compile(r"verify\s*=\s*False|CERT_NONE|disable_warnings|check_hostname\s*=\s*False")
    scripts = glob.glob(os.path.join(ROOT, "*.py"))
    offenders = [path for path in scripts if pattern.search(open(path, encoding="utf-8").read())]
    config = cvat_common.load_config({"CVAT_URL": "https://127.0.0.1:9", "CVAT_ACCESS_TOKEN": SECRET_TOKEN})
    assert offenders == []
    assert cvat_common.CvatClient(config).session.verify is True


# Authorization goes to CVAT_URL's origin only.


@pytest.fixture
def other_port():
    """A second local CVAT server on 127.0.0.1 with its own port."""
    server = make_server()
    yield server
    server.stop()


@pytest.mark.parametrize("target", ["other-address", "other-port"])
def test_redirect_target_gets_no_token(cvat_demo, other_origin, other_port, target):
    location = other_origin.url if target == "other-address" else other_port.url
    cvat_demo.add_fault("GET", r"/api/projects/4", status=302, headers={"Location": location + "/api/projects/4"},
                        times=None)
    result = run_script(SHOW, "4", server=cvat_demo)
    if target == "other-address":
        received = [headers for _, _, headers in other_origin.received]
    else:
        received = [record.headers for record in other_port.requests]
    errors = error_lines(result.err)
    assert result.code == 1
    assert [headers for headers in received if "Authorization" in headers] == []
    # The scripts do not follow redirects at all: CVAT_URL must name the server itself.
    assert received == []
    assert len(errors) == 1
    assert "redirected" in errors[0]
    assert "CVAT_URL" in errors[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:8080/api/tasks",
        "http://127.0.0.1:8081/api/tasks",
        "https://127.0.0.1:8080/api/tasks",
        "http://cvat-internal:8080/api/tasks",
    ],
)
def test_token_auth_only_for_cvat_origin(url):
    auth = cvat_common.TokenAuth("Bearer", SECRET_TOKEN, "http://127.0.0.1:8080")
    elsewhere = requests.Request("GET", url, headers={"Authorization": "Bearer " + SECRET_TOKEN}).prepare()
    own = requests.Request("GET", "http://127.0.0.1:8080/api/tasks?page=2").prepare()
    assert "Authorization" not in auth(elsewhere).headers
    assert auth(own).headers["Authorization"] == "Bearer " + SECRET_TOKEN


def test_netrc_does_not_replace_token(cvat_demo, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1\n  login netrc-user\n  password netrc-password\n")
    netrc.chmod(0o600)
    result = run_script(SHOW, "4", server=cvat_demo, HOME=str(tmp_path), NETRC=str(netrc))
    headers = {record.header("Authorization") for record in cvat_demo.requests}
    assert result.code == 0
    assert headers == {"Bearer " + SECRET_TOKEN}


# A read-only personal access token.


@pytest.fixture
def read_only(cvat):
    cvat.seed_scenario("token-kinds")
    cvat.add_token(READ_ONLY_TOKEN, "Bearer", user_id=1, write=False)
    return cvat


def test_read_only_token_update_explained(read_only):
    result = run_script(UPDATE, "train", "14", server=read_only, CVAT_ACCESS_TOKEN=READ_ONLY_TOKEN)
    errors = error_lines(result.err)
    assert result.code == 1
    assert len(errors) == 1
    assert "read-only" in errors[0]
    assert "write access" in errors[0]
    assert read_only.tasks[14]["subset"] == "validation"
    assert [record.status for record in read_only.find("PATCH", r"/api/tasks/14")] == [403]
    assert READ_ONLY_TOKEN not in result.out + result.err


def test_read_only_token_create_leaves_nothing(read_only):
    before = sorted(read_only.tasks)
    result = run_script(CREATE, "--prefix", "site-a/images/", "--name", "ro", server=read_only,
                        CVAT_ACCESS_TOKEN=READ_ONLY_TOKEN)
    errors = error_lines(result.err)
    writes = [record for record in read_only.requests if record.method != "GET"]
    assert result.code == 1
    assert len(errors) == 1
    assert "read-only" in errors[0]
    assert "write access" in errors[0]
    assert sorted(read_only.tasks) == before
    assert [(record.method, record.path, record.status) for record in writes] == [("POST", "/api/tasks", 403)]
    assert READ_ONLY_TOKEN not in result.out + result.err


# Object representations.


def test_config_repr_hides_token():
    config = cvat_common.load_config({"CVAT_URL": "http://127.0.0.1:9", "CVAT_ACCESS_TOKEN": SECRET_TOKEN})
    assert SECRET_TOKEN not in repr(config)
    assert SECRET_TOKEN not in str(config)
    assert "127.0.0.1:9" in repr(config)


def test_auth_repr_hides_token():
    config = cvat_common.load_config({"CVAT_URL": "http://127.0.0.1:9", "CVAT_TOKEN": SECRET_KEY})
    client = cvat_common.CvatClient(config)
    assert SECRET_KEY not in repr(client.session.auth)
    assert SECRET_KEY not in str(client.session.auth)
    assert SECRET_KEY not in repr(client.config)
    assert SECRET_KEY not in repr(client)
