import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.errors import is_expected, message
from tests.helpers import REPO_ROOT, one_error_line

runner = CliRunner()
CSSL = str(Path(sys.executable).parent / "cssl")


def cssl(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The installed `cssl` entry point, as an operator runs it."""
    return subprocess.run([CSSL, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env})


def test_help_lists_every_command_with_a_description():
    result = runner.invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for command in ("demo-data", "ingest", "screen", "window", "quality", "dag", "repro", "flow"):
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


def test_missing_input_with_debug_shows_the_traceback(tmp_path):
    result = cssl("--debug", "ingest", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "nowhere" in result.stderr


def cyclic_project(root: Path) -> Path:
    """A DVC project whose continual stages s1 and s2 each name the other as `prev`."""
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(REPO_ROOT / name, root / name)
    shutil.copytree(REPO_ROOT / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    stages = params["continual"]["stages"]
    first, second = list(stages)[:2]
    params["continual"]["stages"] = {first: dict(stages[first], prev=second), second: dict(stages[second], prev=first)}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def test_cycle_under_dag_is_one_line_naming_the_stages(tmp_path):
    root = cyclic_project(tmp_path)
    stages = list(yaml.safe_load((root / "params.yaml").read_text())["continual"]["stages"])
    line = one_error_line(cssl("dag", cwd=root))  # refused by the params check (cssl_core.config) before DVC
    assert "cycle" in line and all(f"pretrain@{s}" in line for s in stages) and "prev" in line
    debug = cssl("dag", cwd=root, CSSL_DEBUG="1")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    assert one_error_line(cssl("flow", "run", cwd=root)) == line  # before Prefect starts a flow that would crash


def test_cycle_found_by_dvc_itself_is_one_line_naming_the_stages(tmp_path):
    """A cycle that reaches DVC (dvc.yaml edited, or a driver that skips the params check) still reads as one line."""
    from flows.dag import stage_order

    root = cyclic_project(tmp_path)
    stages = list(yaml.safe_load((root / "params.yaml").read_text())["continual"]["stages"])
    with pytest.raises(ValueError, match="cycle") as caught:
        stage_order(root)
    assert all(f"pretrain@{s}" in str(caught.value) for s in stages) and type(caught.value.__cause__).__name__ == \
        "CyclicGraphError"


def test_corrupt_params_yaml_is_one_line_naming_file_and_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ssl:\n  model: [unclosed\n")
    line = one_error_line(cssl("init-model", "--params", str(params), cwd=tmp_path))
    assert f"{params}:3:1: not valid YAML" in line


def test_corrupt_metrics_json_under_summary_is_one_line(tmp_path):
    (tmp_path / "data/summary").mkdir(parents=True)
    (tmp_path / "data/summary/metrics.json").write_text('{"strategy": "finetune", ')
    line = one_error_line(cssl("summary", cwd=tmp_path))
    assert "data/summary/metrics.json: corrupt JSON" in line and "dvc repro report" in line


def test_full_disk_is_expected_and_names_the_path(tmp_path):
    try:
        with open("/dev/full", "w") as handle:  # the kernel's always-full device: a real ENOSPC
            handle.write("x")
    except OSError as error:
        no_space = error
    assert no_space.errno == errno.ENOSPC and is_expected(no_space)
    assert message(no_space).startswith("no space left on device writing an output of this command")
    named = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "volume.nii.gz"))
    assert message(named) == f"no space left on device writing {tmp_path / 'volume.nii.gz'}: free space on " \
        "that disk (df -h) and rerun"


def test_a_bug_keeps_its_traceback_and_says_internal_error():
    code = (
        "import sys\n"
        "from flows.cli import app, main\n"
        "@app.command('bug')\n"
        "def bug() -> None:\n"
        "    1 / 0\n"
        "sys.argv = ['cssl', 'bug']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "ZeroDivisionError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("internal error: ZeroDivisionError")
    assert not is_expected(ZeroDivisionError()) and not is_expected(AttributeError("x"))


def test_out_of_space_error_keeps_its_own_line(tmp_path):
    from cssl_core.atomic_io import OutOfSpaceError

    error = OutOfSpaceError(tmp_path, needed_bytes=5_000_000)
    assert is_expected(error) and message(error) == str(error) and str(tmp_path) in message(error)


def test_key_errors_read_as_what_is_missing():
    explained = KeyError("params.yaml has no 'quality.screen'; see the shipped params.yaml for the expected layout")
    assert message(explained) == explained.args[0]
    assert message(KeyError("quality")).startswith("missing key 'quality': check params.yaml")


def test_ctrl_c_is_one_line_and_exit_130_and_pool_workers_leave_it_to_the_parent():
    """Ctrl-C during ingest printed a KeyboardInterrupt traceback from every pool worker (second new-user trial,
    finding 9): workers now ignore SIGINT and the CLI ends with one line."""
    code = (
        "import signal, flows.cli as cli\n"
        "from cssl_core.ingest.quiet import silence_worker\n"
        "silence_worker(); assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "def interrupted(**kw): raise KeyboardInterrupt\n"
        "cli.app = interrupted; cli.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("interrupted (Ctrl-C): no partial output is used later")
