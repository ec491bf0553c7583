"""How the Table API writes a row: raw values, display values or both, with reference links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from tests.fakes.servicenow.schema import BOOLEAN, DATETIME, DURATION, REFERENCE
from tests.fakes.servicenow.store import Table

__all__ = ["FieldWriter", "display_datetime", "display_duration", "writers"]

FieldWriter = Callable[[list[str]], Any]
# (table, element) -> {value: label}
ChoiceLookup = Callable[[str, str], dict[str, str]]
# (target table, sys_id) -> display value
ReferenceLookup = Callable[[str, str], str]


STORED = "%Y-%m-%d %H:%M:%S"


def display_datetime(value: str, zone: tzinfo | None, form: str = STORED) -> str:
    """A stored UTC datetime in the user's zone (None: UTC) and date format (the default
    ``yyyy-MM-dd HH:mm:ss`` is ``%Y-%m-%d %H:%M:%S``)."""
    if not value or (zone is None and form == STORED):
        return value
    stamp = datetime.strptime(value, STORED).replace(tzinfo=UTC)
    return (stamp if zone is None else stamp.astimezone(zone)).strftime(form)


def display_duration(value: str) -> str:
    """A duration stored as an offset from 1970-01-01 (``1970-01-02 04:23:17``) as the UI
    shows it (``1 Day 4 Hours 23 Minutes``)."""
    if not value:
        return ""
    stamp = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    seconds = int((stamp - datetime(1970, 1, 1)).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{n} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((days, "Day"), (hours, "Hour"), (minutes, "Minute"))
        if n
    ]
    return " ".join(parts) if parts else f"{secs} Second{'s' if secs != 1 else ''}"


def writers(
    table: Table,
    names: list[str],
    *,
    mode: str,
    links: bool,
    base: str,
    zone: tzinfo | None,
    form: str,
    resolve: Callable[[Table, str], tuple[Callable[[list[str]], str], str, str | None] | None],
    choice: ChoiceLookup,
    reference: ReferenceLookup,
) -> list[tuple[str, FieldWriter]]:
    """One writer per requested field (unknown names are left out, as the real API does).

    ``mode`` is ``sysparm_display_value`` (``false``, ``true`` or ``all``); ``links`` is the
    opposite of ``sysparm_exclude_reference_link``. ``resolve`` gives a field's getter, type and
    (for references) target table, following dot-walks.
    """
    out: list[tuple[str, FieldWriter]] = []
    for name in names:
        found = resolve(table, name)
        if found is None:
            continue
        get, kind, target = found
        element = name.rsplit(".", 1)[-1]
        owner = table.name if "." not in name else (_owner(table, name, resolve) or table.name)
        out.append(
            (
                name,
                _writer(
                    get,
                    kind,
                    target,
                    element,
                    owner,
                    mode=mode,
                    links=links,
                    base=base,
                    zone=zone,
                    form=form,
                    choice=choice,
                    reference=reference,
                ),
            )
        )
    return out


def _owner(
    table: Table,
    name: str,
    resolve: Callable[[Table, str], tuple[Callable[[list[str]], str], str, str | None] | None],
) -> str | None:
    head = name.rsplit(".", 1)[0]
    found = resolve(table, head)
    return found[2] if found else None


def _writer(
    get: Callable[[list[str]], str],
    kind: str,
    target: str | None,
    element: str,
    owner: str,
    *,
    mode: str,
    links: bool,
    base: str,
    zone: tzinfo | None,
    form: str,
    choice: ChoiceLookup,
    reference: ReferenceLookup,
) -> FieldWriter:
    labels = choice(owner, element)

    def display(value: str) -> str:
        if value == "":
            return ""
        if kind == REFERENCE and target is not None:
            return reference(target, value)
        if kind == DATETIME:
            return display_datetime(value, zone, form)
        if kind == DURATION:
            return display_duration(value)
        if kind == BOOLEAN:
            return value
        return labels.get(value, value)

    if kind == REFERENCE and target is not None:
        prefix = f"{base}/api/now/table/{target}/"

        def write_reference(row: list[str]) -> Any:
            value = get(row)
            if value == "":
                if mode == "all":
                    return {"display_value": "", "value": ""}
                return ""
            if mode == "false":
                return {"link": prefix + value, "value": value} if links else value
            if mode == "true":
                shown = display(value)
                return {"display_value": shown, "link": prefix + value} if links else shown
            out = {"display_value": display(value), "value": value}
            if links:
                out["link"] = prefix + value
            return out

        return write_reference
    if mode == "false":
        return get
    # no label, no zone or format to apply: the display value is the stored one
    shown_as_stored = not labels and (
        kind not in (DATETIME, DURATION) or (kind == DATETIME and zone is None and form == STORED)
    )
    if mode == "true":
        return get if shown_as_stored else (lambda row: display(get(row)))
    if shown_as_stored:
        return lambda row: {"display_value": (v := get(row)), "value": v}
    return lambda row: {"display_value": display(v := get(row)), "value": v}
