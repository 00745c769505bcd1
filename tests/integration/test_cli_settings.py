"""Settings from the command line: ``minicelery upgrade settings`` renames Celery 3 setting
names in a settings file in place (the rest of the file's bytes kept, as ``celery upgrade
settings`` does), and ``--config MODULE`` loads a settings module into the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from minicelery.cli.upgrade import upgrade_line
from tests.helpers import run_cli

OLD = b'BROKER_URL = "memory://"\r\nCELERY_ALWAYS_EAGER = True\r\n# \xc3\xa9t\xc3\xa9\n'


@pytest.mark.parametrize(
    ("options", "expected", "backup"),
    [
        (
            (),
            b'broker_url = "memory://"\r\ntask_always_eager = True\r\n# \xc3\xa9t\xc3\xa9\n',
            True,
        ),
        (
            ("--django", "--no-backup"),
            b'CELERY_BROKER_URL = "memory://"\r\nCELERY_TASK_ALWAYS_EAGER = True\r\n'
            b"# \xc3\xa9t\xc3\xa9\n",
            False,
        ),
    ],
)
def test_settings_are_renamed_in_place(
    tmp_path: Path, options: tuple[str, ...], expected: bytes, backup: bool
) -> None:
    path = tmp_path / "celeryconfig.py"
    path.write_bytes(OLD)
    done = run_cli("upgrade", "settings", str(path), *options)
    assert done.returncode == 0, done.stderr
    assert "Changes to your setting have been made!" in done.stdout
    assert path.read_bytes() == expected
    orig = path.with_name("celeryconfig.py.orig")
    assert orig.exists() is backup and (not backup or orig.read_bytes() == OLD)
    again = run_cli("upgrade", "settings", str(path))
    assert "Does not seem to require any changes" in again.stdout


def test_a_missing_file_is_one_line_error(tmp_path: Path) -> None:
    done = run_cli("upgrade", "settings", str(tmp_path / "nope.py"))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: cannot read") and "Traceback" not in done.stderr


def test_only_whole_old_names_are_renamed() -> None:
    assert upgrade_line("BROKER_TRANSPORT_OPTIONS = {}\n", False) == (
        "broker_transport_options = {}\n"
    )
    assert upgrade_line("CELERY_BROKER_URL = 'x'\n", False) == "CELERY_BROKER_URL = 'x'\n"
    assert upgrade_line("CELERYD_CONCURRENCY = 4\n", True) == "CELERY_WORKER_CONCURRENCY = 4\n"


def test_config_loads_a_settings_module_into_the_app() -> None:
    done = run_cli("--config", "tests.integration.apps.configmodule", "report")
    assert done.returncode == 0, done.stderr
    assert "result_expires: 1234" in done.stdout
    assert "task_default_queue: 'from-config'" in done.stdout
    missing = run_cli("--config", "tests.integration.apps.no_such_module", "report")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("Error: cannot import configuration module")
