"""Fixtures shared by the script tests: the local CVAT server and a runner for the real scripts.

Every script run goes through run_script(), which records stdout and stderr. After each test, the
autouse fixture no_token_in_output fails the test if any known token appears in them.
"""

import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

from fake_cvat import FakeCvat  # noqa: E402

# Token every script test runs with; distinctive, so that a leak is easy to find in any output.
SECRET_TOKEN = "pat-s3cr3t-4f9c2b7e91d0"
# Legacy API key accepted by the test server, for the Token scheme.
SECRET_KEY = "key-s3cr3t-77ab03c5e2"
# Backoff base in seconds for the scripts' retries in tests, so a retry test takes a moment.
TEST_BACKOFF = "0.05"

_outputs = []


class ScriptResult:
    """Exit code and output of one script run."""

    def __init__(self, code, out, err):
        self.code = code
        self.out = out
        self.err = err

    def __repr__(self):
        return "ScriptResult(code=%r, out=%r, err=%r)" % (self.code, self.out[-2000:], self.err[-2000:])


def make_server(**settings):
    """Return a started local CVAT server that accepts the test tokens."""
    server = FakeCvat(**settings)
    server.add_token(SECRET_TOKEN, "Bearer", user_id=1, write=True)
    server.add_token(SECRET_KEY, "Token", user_id=1, write=True)
    server.start()
    return server


@pytest.fixture
def cvat():
    """A started, empty local CVAT server (user alice, test tokens); seed it in the test."""
    server = make_server(processing_seconds=0.2)
    yield server
    server.stop()


@pytest.fixture
def cvat_demo():
    """A started local CVAT server seeded like the team's CVAT (project 4, cloud storages 3 and 4)."""
    server = make_server(processing_seconds=0.2)
    server.seed_demo()
    yield server
    server.stop()


def script_env(server=None, **overrides):
    """Return the environment for a script run: no inherited CVAT settings, the test token."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CVAT_")}
    env.pop("REQUESTS_CA_BUNDLE", None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["CVAT_RETRY_BACKOFF"] = TEST_BACKOFF
    env["CVAT_ACCESS_TOKEN"] = SECRET_TOKEN
    if server is not None:
        env["CVAT_URL"] = server.url
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_script(script, *args, server=None, env=None, timeout=120, **env_overrides):
    """Run a project script as a subprocess and return its ScriptResult.

    env replaces the whole environment; env_overrides change single variables (None removes one).
    """
    if env is None:
        env = script_env(server, **env_overrides)
    command = [sys.executable, os.path.join(ROOT, script)] + [str(arg) for arg in args]
    completed = subprocess.run(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout
    )
    result = ScriptResult(
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )
    _outputs.append(result.out)
    _outputs.append(result.err)
    return result


def record_output(text):
    """Add text produced outside run_script (an in-process run, a log) to the token check."""
    _outputs.append(text)


@pytest.fixture(autouse=True)
def no_token_in_output():
    """Fail the test if a test token appears in anything a script printed."""
    del _outputs[:]
    yield
    for text in _outputs:
        for token in (SECRET_TOKEN, SECRET_KEY):
            assert token not in text, "a token appeared in script output"
