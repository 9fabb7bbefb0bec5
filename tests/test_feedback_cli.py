"""``mmrec feedback ...`` and ``mmrec bench feedback-store``: found through the
plugin entry point, free of TensorFlow, and saying what they did."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmrec.cli import add_plugin_commands, build_parser, main

from feedback.store.schema import SCHEMA_VERSION
from feedback.bench.feedback_store import format_report, run_store_benchmark
from feedback.store import FeedbackStore

T0 = 1_704_103_200
LINES = [json.dumps({"user_id": f"u{k % 3}", "item_id": f"i{k}", "timestamp": T0 + k})
         for k in range(6)] + ["{oops", json.dumps({"user_id": "u9", "timestamp": T0})]


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None):
    """``mmrec ARGS`` in a fresh process; reports whether TensorFlow was loaded."""
    code = ("import sys\nfrom mmrec.cli import main\nstatus = main(sys.argv[1:])\n"
            "print('tensorflow loaded:', 'tensorflow' in sys.modules, file=sys.stderr)\n"
            "sys.exit(status)\n")
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin,
                          capture_output=True, text=True, timeout=120, check=False, env=env)


def test_ingest_a_file_twice_accepts_nothing_new_and_loads_no_tensorflow(store_url, tmp_path):
    path = tmp_path / "clicks.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    first = run_cli("feedback", "ingest", str(path), "--store", store_url, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["received"], report["accepted"], report["rejected"]) == (8, 6, 2)
    assert "tensorflow loaded: False" in first.stderr and "device" not in first.stderr
    second = run_cli("feedback", "ingest", str(path), "--store", store_url)
    assert second.returncode == 0, second.stderr
    assert ("received 8 = accepted 0 + duplicates 6 + rejected 2 (1 malformed, 1 missing "
            "field) + pending 0") in second.stdout
    assert "mmrec feedback quarantine" in second.stdout


def test_ingest_reads_standard_input_in_acknowledged_batches(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    csv_text = "user_id,item_id,timestamp,event\n" + "".join(
        f"u{k},i{k},{T0 + k},purchase\n" for k in range(5))
    done = run_cli("feedback", "ingest", "-", "--format", "csv", "--batch-size", "2",
                   "--store", url, "--json", stdin=csv_text)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["accepted"], report["batches"]) == (5, 3)
    refused = run_cli("feedback", "ingest", "-", "--store", url, stdin="")
    assert refused.returncode == 2 and "needs --format jsonl or --format csv" in refused.stderr


def test_the_inspecting_and_deleting_commands(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    monkeypatch.setenv("MMREC_FEEDBACK_STORE", url)  # no --store: the variable decides
    path = tmp_path / "clicks.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    assert main(["feedback", "ingest", str(path)]) == 0
    capsys.readouterr()

    assert main(["feedback", "stats"]) == 0
    out = capsys.readouterr().out
    assert f"store {url} (sqlite, schema version {SCHEMA_VERSION})" in out
    assert "events      6 from 3 users on 6 items" in out
    assert "quarantine  2 records (1 malformed, 1 missing field)" in out

    assert main(["feedback", "quarantine", "--reason", "malformed"]) == 0
    out = capsys.readouterr().out
    assert f"malformed, {path} line 7: not valid JSON" in out and "{oops" in out
    export = tmp_path / "quarantine.jsonl"
    assert main(["feedback", "quarantine", "--export", str(export)]) == 0
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert sorted(r["reason"] for r in rows) == ["malformed", "missing field"]

    assert main(["feedback", "forget-user", "u1"]) == 0
    assert "deleted 2 events" in capsys.readouterr().out
    assert main(["feedback", "prune", "--before", "2024-01-01T10:00:03Z"]) == 0
    assert "pruned before 2024-01-01 10:00:03 UTC: 2 events" in capsys.readouterr().out
    with FeedbackStore(url) as store:
        assert store.count() == 2 and store.recent_items("u1", 5) == []


def test_the_catalogue_command_makes_unknown_items_pending(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni0,a\ni1,b\n")
    assert main(["feedback", "catalogue", "--items", str(items), "--store", url]) == 0
    assert "catalogue set to 2 items" in capsys.readouterr().out
    path = tmp_path / "clicks.jsonl"
    path.write_text("\n".join(LINES[:4]) + "\n")
    assert main(["feedback", "ingest", str(path), "--store", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["accepted"], report["pending"]) == (2, 2)
    more = tmp_path / "more.csv"
    more.write_text("item_id\ni2\ni3\n")
    assert main(["feedback", "catalogue", "--items", str(more), "--add", "--store", url]) == 0
    assert "added 2 items; released 2 pending events" in capsys.readouterr().out
    assert main(["feedback", "catalogue", "--items", str(more), "--add", "--store", url,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"catalogue": 2, "added": True,
                                                   "released": 0}
    # an item without an id is refused by file, row and field, and nothing changes
    blank = tmp_path / "blank.csv"
    blank.write_text("item_id,title\ni4,d\n,e\n")
    assert main(["feedback", "catalogue", "--items", str(blank), "--store", url]) == 2
    assert f"file {blank}, row 2, field 'item_id': an item without an id" in \
        capsys.readouterr().err
    assert main(["feedback", "catalogue", "--off", "--add", "--store", url]) == 2
    assert "with --off there is no catalogue to add to" in capsys.readouterr().err
    with FeedbackStore(url) as store:
        assert store.ingest([{"user_id": "u", "item_id": "i4", "timestamp": T0}]).pending == 1


def test_store_config_comes_from_the_feedback_table_of_a_toml_file(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    config = tmp_path / "feedback.toml"
    config.write_text('[feedback]\nevent_kinds = ["click", "like"]\n'
                      'history_events = ["click", "like"]\n')
    path = tmp_path / "likes.jsonl"
    path.write_text(json.dumps({"user_id": "u", "item_id": "i", "timestamp": T0,
                                "event": "like"}) + "\n")
    assert main(["feedback", "ingest", str(path), "--store", url, "--config", str(config),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 1
    config.write_text("[feedback]\nbatch_size = 0\n")
    assert main(["feedback", "stats", "--store", url, "--config", str(config)]) == 2
    assert "feedback.batch_size must be at least 1, got 0" in capsys.readouterr().err


def test_an_unusable_store_is_one_line_and_exit_status_2(capsys):
    assert main(["feedback", "stats", "--store", "mysql://u@h/db"]) == 2
    assert "runs on SQLite or PostgreSQL" in capsys.readouterr().err


def _commands() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction, dict]:
    parser = argparse.ArgumentParser(prog="mmrec")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench").add_subparsers(dest="bench_command", required=True)
    return parser, commands, {"bench": bench}


def test_plugins_add_quiet_commands_and_mmrec_works_without_them(capsys):
    parser, commands, groups = _commands()
    assert add_plugin_commands(commands, groups, plugins=()) == []
    with pytest.raises(SystemExit):
        parser.parse_args(["feedback", "stats"])  # nothing installed: no such command
    capsys.readouterr()
    installed = importlib.metadata.entry_points(group="mmrec.commands")
    assert [p.name for p in installed] == ["feedback"]
    parser, commands, groups = _commands()
    assert add_plugin_commands(commands, groups, plugins=installed) == ["feedback"]
    assert parser.parse_args(["feedback", "stats"]).quiet is True
    assert parser.parse_args(["bench", "feedback-store"]).quiet is True
    assert build_parser().parse_args(["feedback", "prune", "--before", "2024-01-01"]).quiet


def test_a_broken_plugin_is_named_and_the_rest_of_the_cli_works(capsys):
    parser, commands, groups = _commands()
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_module:add",
                                           group="mmrec.commands")
    installed = list(importlib.metadata.entry_points(group="mmrec.commands"))
    assert add_plugin_commands(commands, groups, plugins=[broken, *installed]) == ["feedback"]
    assert "commands of 'broken' (no_such_module:add) are unavailable" in capsys.readouterr().err
    assert parser.parse_args(["feedback", "stats"]).feedback_command == "stats"


def test_the_store_benchmark_checks_its_counts_at_a_small_size(tmp_path, postgres_server):
    report = run_store_benchmark(events=3000, measured_events=2000, cli_events=600,
                                 batch_size=500, calls=50, folder=tmp_path,
                                 postgres_url=postgres_server.create_database("bench_smoke"))
    assert report["all_counts_checked"], json.dumps(report, indent=2)
    for backend in ("sqlite", "postgresql"):
        result = report["results"][backend]
        assert result["api"]["new"] == 1960 and result["store_events_at_end"] == 3000 + 1960 + 588
        assert result["recent_items"]["calls"] == 50
    assert "| sqlite |" in format_report(report) and "| postgresql |" in format_report(report)
    assert not any(Path(tmp_path).glob("feedback-bench*"))  # the bench cleans up
