"""``minicelery upgrade settings FILE``: rename Celery's pre-4.0 setting names in a settings
module to the current ones, as Celery's ``celery upgrade settings`` does (keeping the file's
bytes otherwise: its encoding, line endings and comments)."""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

import click

from ..config_compat import OLD_TO_NEW


@click.group()
def upgrade() -> None:
    """Upgrade a project's files from earlier versions of Celery."""


@cache
def _old_names() -> re.Pattern[str]:
    # Longest first, and whole names only: BROKER_TRANSPORT never eats a piece of
    # BROKER_TRANSPORT_OPTIONS, nor BROKER_URL one of CELERY_BROKER_URL.
    names = sorted(OLD_TO_NEW, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")


def _django_name(name: str) -> str:
    """The name a Django project's settings give: upper case, under ``CELERY_``."""
    upper = name.upper()
    return upper if upper.startswith("CELERY_") else f"CELERY_{upper}"


def upgrade_line(line: str, prefixed: bool) -> str:
    """``line`` with the first old setting name on it renamed (one per line, as Celery)."""
    return _old_names().sub(lambda match: _new_name(match.group(1), prefixed), line, count=1)


def _new_name(old: str, prefixed: bool) -> str:
    new = OLD_TO_NEW[old]
    return _django_name(new) if prefixed else new


def _read_lines(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return list(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc


@upgrade.command()
@click.argument("filename", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--django", is_flag=True, help="Django settings: names as CELERY_TASK_...")
@click.option("--compat", is_flag=True, help="Upper-case names under CELERY_, as --django.")
@click.option("--no-backup", is_flag=True, help="Do not keep the original as FILENAME.orig.")
def settings(filename: Path, django: bool, compat: bool, no_backup: bool) -> None:
    """Rename Celery 3 setting names in FILENAME to the current ones."""
    lines = _read_lines(filename)
    click.echo(f"processing {filename}...", err=True)
    upgraded = [upgrade_line(line, django or compat) for line in lines]
    if upgraded == lines:
        click.echo("Does not seem to require any changes :-)")
        return
    try:
        if not no_backup:
            backup = filename.with_name(filename.name + ".orig")
            click.echo(f"writing backup to {backup}...", err=True)
            backup.write_bytes(filename.read_bytes())
        with filename.open("w", encoding="utf-8", newline="") as handle:
            handle.writelines(upgraded)
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename}: {exc.strerror}") from exc
    click.echo("Changes to your setting have been made!", file=sys.stdout)
