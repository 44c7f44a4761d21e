import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()
CSSL = str(Path(sys.executable).parent / "cssl")


def test_help_lists_every_command_with_a_description():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for command in ("demo-data", "ingest", "window", "quality", "dag", "repro", "flow"):
        line = next((ln for ln in result.output.splitlines() if re.search(rf"│ {command}\s", ln)), None)
        assert line is not None, f"{command} missing from --help"
        assert len(line.split(command, 1)[1].strip(" │")) > 10, f"{command} has no description"
    flow_help = runner.invoke(app, ["flow", "--help"], terminal_width=200)
    assert "run" in flow_help.output and "serve" in flow_help.output


def test_missing_input_is_one_clear_line_and_nonzero(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run([CSSL, "ingest", "--input", str(missing), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nowhere" in lines[0]
    assert "Traceback" not in result.stderr


def test_folder_without_dicom_is_one_clear_line_and_nonzero(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("hello")
    result = subprocess.run([CSSL, "ingest", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    last = [ln for ln in result.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error:") and "not_dicom" in last and "Traceback" not in result.stderr


def test_queue_state_reads_dvc_queue_status():
    from flows.compare import queue_state

    status = """Task     Name          Created    Status
6cd87c4  finetune-s0   02:00 PM   Success
15eecb6  finetune-s1   02:00 PM   Running
e31d86f  finetune-s2   02:01 PM   Queued
5dc5737  joint-s0      02:01 PM   Failed

Worker status: 0 active, 0 idle
"""
    assert queue_state(status) == (2, 0)
    assert queue_state(status.replace("0 active, 0 idle", "1 active, 0 idle")) == (2, 1)
    assert queue_state("No experiment tasks in the queue.\n\nWorker status: 0 active, 1 idle\n") == (0, 1)
    assert queue_state("something else entirely\n")[1] == 1  # unknown format: never restart workers
