#!/usr/bin/env python3
"""Print how a CVAT project's tasks and frames split over subsets (train, validation, test, ...).

Example:
    python3 show_project_subsets.py 4
    python3 show_project_subsets.py 4 --json

Subsets are shown exactly as stored: CVAT treats "Train" and "train" as two subsets, so the
report keeps them apart and adds a note when two names differ only in case. Tasks without a
subset form their own group. Tasks still processing or whose data failed have no frames yet and
are marked "no data yet".

Reads CVAT_URL, CVAT_ACCESS_TOKEN or CVAT_TOKEN, and CVAT_ORG (see cvat_common.py).
Exit codes: 0 report printed, 1 failed, 2 bad usage or configuration (nothing sent), 130 interrupted.
"""

import json
import sys

from cvat_common import (
    ArgumentParser,
    CvatClient,
    UsageError,
    enter_project_organization,
    load_config,
    read_project,
    run,
    supports_emoji,
)

# Project reported when no PROJECT_ID argument is given.
PROJECT_ID = 4

# Subsets listed first, in this order; other subset names follow alphabetically.
SUBSET_ORDER = ("train", "validation", "test")
# Width of the "=" rules around the report.
RULE_WIDTH = 70
# Group name shown for tasks without a subset.
NO_SUBSET_LABEL = "(none)"


def parse_args(argv):
    parser = ArgumentParser(
        description="Print how a CVAT project's tasks and frames split over subsets."
    )
    parser.add_argument(
        "project_id",
        nargs="?",
        default=str(PROJECT_ID),
        metavar="PROJECT_ID",
        help="project to report (default: %d)" % PROJECT_ID,
    )
    parser.add_argument("--json", action="store_true", help="print the same figures as JSON")
    args = parser.parse_args(argv)

    if not args.project_id.isdigit() or int(args.project_id) < 1:
        raise UsageError("invalid PROJECT_ID %r: give a positive integer, e.g. 4" % args.project_id)
    args.project_id = int(args.project_id)
    return args


def task_frames(task):
    """Return (frames, has_data) of a task; a task without data has no "size" or size 0."""
    size = task.get("size") or 0
    return int(size), size > 0


def subset_sort_key(name):
    """Order subsets: train, validation, test, then others alphabetically, then no subset."""
    if name is None:
        return (2, "", "")
    folded = name.casefold()
    if folded in SUBSET_ORDER:
        return (0, "%d" % SUBSET_ORDER.index(folded), name != folded, name)
    return (1, folded, name)


def summarize(project, tasks):
    """Group tasks by subset and return the report as a dict (the --json output)."""
    groups = {}
    for task in sorted(tasks, key=lambda item: -item["id"]):
        name = (task.get("subset") or "").strip() or None
        frames, has_data = task_frames(task)
        group = groups.setdefault(name, {"subset": name, "tasks": 0, "frames": 0, "details": []})
        group["tasks"] += 1
        group["frames"] += frames
        group["details"].append(
            {"id": task["id"], "name": task.get("name", ""), "frames": frames, "has_data": has_data}
        )

    total_frames = sum(group["frames"] for group in groups.values())
    subsets = [groups[name] for name in sorted(groups, key=subset_sort_key)]
    for group in subsets:
        share = 100.0 * group["frames"] / total_frames if total_frames else None
        group["percentage"] = None if share is None else round(share, 1)
        group["tasks_without_data"] = sum(1 for task in group["details"] if not task["has_data"])

    return {
        "project": {"id": project["id"], "name": project.get("name", "")},
        "total_tasks": len(tasks),
        "total_frames": total_frames,
        "subsets": subsets,
        "notes": case_notes(subsets),
    }


def case_notes(subsets):
    """Return a note for every set of subset names that differ only in case."""
    by_folded = {}
    for group in subsets:
        if group["subset"] is not None:
            by_folded.setdefault(group["subset"].casefold(), []).append(group)

    notes = []
    for folded, variants in by_folded.items():
        if len(variants) < 2:
            continue
        names = ", ".join("'%s'" % group["subset"] for group in variants)
        note = "subsets %s differ only in case and CVAT keeps them apart" % names
        if folded in SUBSET_ORDER:
            # update_task_subset.py sends the lower-case name, so every other spelling moves.
            ids = " ".join(
                str(task["id"]) for group in variants if group["subset"] != folded for task in group["details"]
            )
            note += "; to merge them run: python3 update_task_subset.py %s %s" % (folded, ids)
        else:
            # update_task_subset.py sets only train, validation and test, so it cannot merge these.
            note += "; to merge them, give the tasks one spelling in CVAT"
        notes.append(note)
    return notes


def format_report(report, emoji):
    """Return the report as text lines, in the layout of the team's dataset notes."""
    rule = "=" * RULE_WIDTH
    chart, folder, bullet = ("📊 ", "📁 ", "•") if emoji else ("", "", "-")
    lines = [rule, "%s%s - Dataset Split" % (chart, report["project"]["name"]), rule, ""]
    lines.append("Total frames: {:,}".format(report["total_frames"]))
    lines.append("")

    if not report["subsets"]:
        lines.append("No tasks in this project: 0 tasks, 0 frames.")
        lines.append("")

    for group in report["subsets"]:
        name = NO_SUBSET_LABEL if group["subset"] is None else group["subset"]
        tasks = str(group["tasks"])
        if group["tasks_without_data"]:
            tasks += " (%d without data yet)" % group["tasks_without_data"]
        percentage = "n/a" if group["percentage"] is None else "%.1f%%" % group["percentage"]
        lines.append("%sSubset: %s" % (folder, name))
        lines.append("   Tasks: %s" % tasks)
        lines.append("   Frames: {:,}".format(group["frames"]))
        lines.append("   Percentage: %s" % percentage)
        lines.append("   Details:")
        for task in group["details"]:
            state = "" if task["has_data"] else ", no data yet"
            lines.append(
                "     %s #%d: %s (%d frames%s)" % (bullet, task["id"], task["name"], task["frames"], state)
            )
        lines.append("")

    for note in report["notes"]:
        lines.append("Note: " + note)
    if report["notes"]:
        lines.append("")
    lines.append(rule)
    return lines


def main(argv=None):
    args = parse_args(argv)
    config = load_config()
    client = CvatClient(config)

    project = read_project(client, args.project_id)
    enter_project_organization(client, project)

    tasks = client.list_all(
        "/api/tasks",
        "listing the tasks of project %d" % args.project_id,
        params={"project_id": args.project_id},
    )
    report = summarize(project, tasks)

    emoji = supports_emoji(sys.stdout)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=not emoji))
    else:
        print("\n".join(format_report(report, emoji)))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
