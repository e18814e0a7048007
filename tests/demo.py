#!/usr/bin/env python3
"""Run the main job against the bundled local CVAT test server and show the dataset split.

    python3 tests/demo.py

It starts the local server on 127.0.0.1, seeded like the team's CVAT: project 4 "Polyvision 4
classes" with three train tasks, and cloud storage 4 with 2,388 validation images. It runs the
real scripts unchanged as subprocesses and checks the split report against the expected block.
Then it stops the server and exits 0 on success. Nothing is sent anywhere but 127.0.0.1.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from fake_cvat import FakeCvat  # noqa: E402

# Port tried first, so that two runs print the same task URL; a free port is taken if it is busy.
PREFERRED_PORT = 18080
# Token the seeded server accepts for the demo.
DEMO_TOKEN = "demo-token"
# Prefix and name of the validation task the demo creates, as in the team's notes.
PREFIX = "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"
TASK_NAME = "nrt_Parc-Omnisport-Suzanne-Lenglen_2026-02-14_validation"

EXPECTED_REPORT = """\
======================================================================
📊 Polyvision 4 classes - Dataset Split
======================================================================

Total frames: 12,649

📁 Subset: train
   Tasks: 3
   Frames: 10,261
   Percentage: 81.1%
   Details:
     • #19: Vincennes-Athletic-small_2026-02-10_201919 (3930 frames)
     • #17: Stade-de-la-Tour-aux-Parachutes_2026-02-10_155217 (4836 frames)
     • #14: Polyvision 4cls - full dataset v1.1.6 (1495 frames)

📁 Subset: validation
   Tasks: 1
   Frames: 2,388
   Percentage: 18.9%
   Details:
     • #20: nrt_Parc-Omnisport-Suzanne-Lenglen_2026-02-14_validation (2388 frames)

======================================================================
"""


def start_server():
    """Start the seeded local server on PREFERRED_PORT, or on a free port if that one is taken."""
    server = FakeCvat(processing_steps=3)
    server.seed_demo()
    try:
        server.start(port=PREFERRED_PORT)
    except OSError:
        server.start()
    return server


def run_script(server, *args):
    """Run one project script with the demo's environment; echo and return its output."""
    env = dict(os.environ)
    for name in ("CVAT_TOKEN", "CVAT_ORG", "CVAT_DEBUG"):
        env.pop(name, None)
    env.update({"CVAT_URL": server.url, "CVAT_ACCESS_TOKEN": DEMO_TOKEN, "PYTHONIOENCODING": "utf-8"})
    command = [sys.executable, os.path.join(ROOT, args[0])] + list(args[1:])
    print("$ python3 %s" % " ".join(args), flush=True)
    # Progress goes to stderr unbuffered and results to stdout at exit, so merging keeps their order.
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    output = result.stdout.decode("utf-8")
    sys.stdout.write(output)
    print(flush=True)
    if result.returncode != 0:
        raise SystemExit("demo failed: %s exited with %d" % (args[0], result.returncode))
    return output


def main():
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    server = start_server()
    print("Local CVAT test server at %s (project 4, cloud storages 3 and 4)\n" % server.url, flush=True)
    try:
        run_script(server, "create_cvat_task_validation.py", "--prefix", PREFIX, "--name", TASK_NAME)
        report = run_script(server, "show_project_subsets.py", "4")
    finally:
        server.stop()

    if report != EXPECTED_REPORT:
        raise SystemExit("demo failed: the split report differs from the expected block")
    print("Demo passed: task #20 created and the split report matches the expected block.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
