"""The pull-request comment view of a plan, built from the canonical JSON form.

Counts only: member identifiers appear only when the caller asks for them, and then as a
bounded sample the caller gathered, masked. The comment stays under `max_chars` (GitHub
refuses comments over 65,536 characters): past it, the stopped, destructive and largest
changes keep their table rows first, the rest are counted in one line, and details are
dropped where the budget ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from segops.model import Plan
from segops.render.json import plan_to_dict

MARKER = "<!-- segops-plan -->"  # a CI job finds the one sticky comment to update by it
SAMPLE_SIZE = 5  # identifiers shown per destination with show_identifiers
_PREFIX = 4  # characters of an identifier shown before the mask, at most half of it
_TABLE_HEAD = (
    "| segment | destination | +add | -remove | ~update | action | guards | quota ETA "
    "| members before → after |\n|---|---|--:|--:|--:|---|---|---|--:|"
)
_ACTION = {
    "create": "create",
    "update": "update",
    "recreate": "⚠️ **recreate**",
    "destroy": "🗑️ **destroy**",
    "move": "move",
}
_VERB = {
    "create": "will be created",
    "update": "will be updated in place",
    "recreate": "must be recreated",
    "destroy": "will be destroyed",
    "move": "moves here",
}
_EFFECT = {"recreate": "**forces recreate**", "refresh": "every member is sent again"}
_MD_ESCAPE = re.compile(r"[\\`*\[\]|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def render_markdown(
    plan: Plan,
    *,
    artifact: str | None = None,
    show_identifiers: bool = False,
    samples: Mapping[str, Sequence[str]] | None = None,
    max_chars: int = 60_000,
) -> str:
    """Return the plan as a pull-request comment of at most about `max_chars` characters.

    Args:
        artifact: where the full plan is, as Markdown from the CI job (a URL, an artifact name).
        show_identifiers: show the masked `samples`; without it no identifier ever appears.
        samples: destination address -> identifiers to sample (at most SAMPLE_SIZE are shown).
    """
    data = plan_to_dict(plan)
    changes = sorted((c for c in data["changes"] if c["action"] != "no-op"), key=_priority)
    shown = samples if show_identifiers and samples is not None else {}
    head = _head(data, max_chars // 3)
    foot = _footer(data, artifact)
    if not changes:
        return f"{head}\n\n{foot}\n"
    rows = [_row(c) for c in changes]
    sampled = [shown.get(c["address"], ()) for c in changes]
    details = [_details(c, s) for c, s in zip(changes, sampled, strict=True)]
    full = _assemble(head, rows, "", details, foot)
    if len(full) <= max_chars:
        return full
    # Short of room, details that only repeat the row and an operation count go first.
    useful = [
        d if _informative(c, s) else "" for c, s, d in zip(changes, sampled, details, strict=True)
    ]
    return _summarised(head, changes, rows, useful, foot, max_chars)


def _priority(change: Mapping[str, Any]) -> tuple[int, int, str]:
    """Order changes for review: stopped by a guard, then recreates and destroys, then size."""
    tier = 0 if change["guards"] else 1 if change["action"] in ("recreate", "destroy") else 2
    m = change["members"]
    return tier, -(m["add"] + m["remove"] + m["update"]), change["address"]


def _assemble(head: str, rows: Sequence[str], more: str, details: Sequence[str], foot: str) -> str:
    blocks = [head, "\n".join([_TABLE_HEAD, *rows])]
    blocks += [more] if more else []
    blocks += [*(d for d in details if d), foot]
    return "\n\n".join(blocks) + "\n"


def _summarised(
    head: str,
    changes: Sequence[Mapping[str, Any]],
    rows: Sequence[str],
    details: Sequence[str],
    foot: str,
    max_chars: int,
) -> str:
    """Return the comment with as many rows and details ("": left out) as fit in `max_chars`."""
    total = len(changes)
    # Every count below is at most `total`, so these texts are at least as long as the final.
    reserve = len(_more(changes)) + len(_note(total, total, total, max_chars)) + 8
    budget = max_chars - len(_assemble(head, [], "", [], foot)) - reserve
    # Details get half the budget, or all that the rows leave when every row fits in less.
    rows_size = sum(len(r) + 1 for r in rows)
    n_details = _fitting(details, max(budget // 2, budget - rows_size), 2)
    used = sum(len(d) + 2 for d in details[:n_details])
    n_rows = _fitting(rows, budget - used, 1)
    n_details = min(n_details, n_rows)
    more = _more(changes[n_rows:]) if n_rows < total else ""
    note = _note(n_rows, sum(1 for d in details[:n_details] if d), total, max_chars)
    return _assemble(head, rows[:n_rows], more, details[:n_details], f"{note}\n\n{foot}")


def _informative(change: Mapping[str, Any], sample: Sequence[str]) -> bool:
    """Say whether a change's details tell more than its table row and operation count."""
    return bool(
        change["guards"]
        or change["setting_changes"]
        or change["reason"]
        or change["eta"]
        or change["members"]["skipped"]
        or sample
        or change["action"] == "create"
    )


def _fitting(items: Sequence[str], budget: int, separator: int) -> int:
    """Return how many leading `items` fit in `budget` characters."""
    count = 0
    for item in items:
        budget -= len(item) + separator
        if budget < 0:
            break
        count += 1
    return count


def _more(rest: Sequence[Mapping[str, Any]]) -> str:
    add, remove, update = (
        sum(c["members"][op] for c in rest) for op in ("add", "remove", "update")
    )
    return (
        f"…and **{_plural(len(rest), 'more destination')} with changes** "
        f"(+{add:,} -{remove:,} ~{update:,}), "
        "listed in the full plan."
    )


def _note(rows: int, details: int, total: int, max_chars: int) -> str:
    return (
        f"_Summarised to stay under {max_chars:,} characters: {rows:,} of {total:,} changed "
        f"destinations listed, {details:,} with details._"
    )


# -- head: headline, totals, guards ------------------------------------------------------


def _head(data: Mapping[str, Any], caution_budget: int) -> str:
    summary = data["summary"]
    d, m = summary["destinations"], summary["members"]
    if sum(d[a] for a in ("create", "update", "recreate", "destroy", "move")):
        headline = (
            f"### segops plan: {d['create']} to create, {d['update']} to update, "
            f"{d['recreate']} to recreate, {d['destroy']} to destroy"
        )
        if summary["moved"]:
            headline += f", {summary['moved']} to move"
        totals = f"**Members:** +{m['add']:,} to add, ~{m['update']:,} to update, "
        totals += f"-{m['remove']:,} to remove"
    else:
        headline = "### segops plan: no changes"
        totals = (
            f"The state matches the manifests ({_plural(len(data['changes']), 'destination')})."
        )
    if summary["guards_tripped"]:
        headline += f" · ⛔ {summary['guards_tripped']} stopped by safety guards"
    if m["skipped"]:
        totals += f" · ⚠️ {_plural(m['skipped'], 'bad source row')} skipped"
    blocks = [f"{MARKER}\n{headline}", totals]
    if data.get("selection"):
        blocks.append(f"Selection: {_code(data['selection'])} (other segments were not planned)")
    if data.get("destroy"):
        blocks.append("**Destroy requested** (`--destroy`): every selected destination goes")
    if data.get("replace"):
        shown = ", ".join(_code(a) for a in data["replace"])
        blocks.append(f"Sent whole again, as requested (`--replace`): {shown}")
    tripped = [c for c in data["changes"] if c["guards"]]
    if tripped:
        blocks.append(_caution(tripped, caution_budget))
    return "\n\n".join(blocks)


def _caution(tripped: Sequence[Mapping[str, Any]], budget: int) -> str:
    """Return the GitHub alert listing each stopped destination and how to override."""
    lines = [
        "> [!CAUTION]",
        f"> **Safety guards stop {_plural(len(tripped), 'destination')}.** `segops apply` refuses "
        "this plan unless an override names each segment below.",
        ">",
    ]
    items = [
        f"> - ⛔ {_code(c['address'])} · {_code(g['guard'])}: {_md(g['message'])}"
        for c in tripped
        for g in c["guards"]
    ]
    kept = _fitting(items, budget, 1)
    lines += items[:kept]
    if kept < len(items):
        lines.append(f"> - …and {len(items) - kept:,} more, listed in the full plan")
    segments = sorted({c["segment"] for c in tripped})
    command = "segops apply <plan file>" + "".join(f" --allow-removals {s}" for s in segments)
    if len(command) > budget // 4:
        command = "segops apply <plan file> --allow-removals <segment>"
    lines += [">", f"> If these changes are intended, apply the saved plan with: {_code(command)}"]
    return "\n".join(lines)


# -- table rows and details --------------------------------------------------------------


def _row(change: Mapping[str, Any]) -> str:
    m = change["members"]
    guards = ", ".join(g["guard"] for g in change["guards"])
    cells = [
        _md(change["segment"]),
        _destination(change),
        f"+{m['add']:,}",
        f"-{m['remove']:,}",
        f"~{m['update']:,}",
        _ACTION[change["action"]],
        f"⛔ {_md(guards)}" if guards else "✅",
        _md(change["eta"] or ""),
        f"{m['before']:,} → {m['after']:,}",
    ]
    return "| " + " | ".join(cells) + " |"


def _destination(change: Mapping[str, Any]) -> str:
    name = change["address"][len(change["segment"]) + 1 :]
    where = f"{change['connection']}/{change['platform']}"
    return _md(where if name == change["connection"] else f"{name} ({where})")


def _details(change: Mapping[str, Any], sample: Sequence[str]) -> str:
    m = change["members"]
    counts = f"+{m['add']:,} -{m['remove']:,} ~{m['update']:,}"
    summary = f"<code>{_html(change['address'])}</code> {_VERB[change['action']]} ({counts})"
    lines = [f"- Moved from {_code(change['moved_from'])}"] if change["moved_from"] else []
    lines += [f"- Why: {_md(change['reason'])}"] if change["reason"] else []
    lines += [f"- ⚠️ {_md(note)}" for note in change["notes"]]
    lines += [f"- ⛔ {_code(g['guard'])}: {_md(g['message'])}" for g in change["guards"]]
    lines += [_setting(s) for s in change["setting_changes"]]
    if change["action"] == "create" and change["settings"]["after"]:
        pairs = sorted(change["settings"]["after"].items())
        lines.append("- Settings: " + ", ".join(f"{_md(k)}: {_value(v)}" for k, v in pairs))
    operations = f"- Operations: {change['operations']:,}"
    if change["eta"]:
        operations += f" · MoEngage quota: {_md(change['eta'])}"
    lines.append(operations)
    if m["skipped"]:
        skipped = _plural(m["skipped"], "bad source row")
        lines.append(f"- ⚠️ {skipped} skipped (`on_bad_rows: skip`)")
    if sample:
        masked = ", ".join(_masked(v) for v in sorted(sample)[:SAMPLE_SIZE])
        lines.append(f"- Sample of members (masked): {masked}")
    body = "\n".join(lines)
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _setting(setting: Mapping[str, Any]) -> str:
    before, after = setting["before"], setting["after"]
    text = f"- {_code(setting['path'])}: {_value(before)} → {_value(after)}"
    effect = _EFFECT.get(setting["effect"])
    return f"{text} ({effect})" if effect else text


def _footer(data: Mapping[str, Any], artifact: str | None) -> str:
    unchanged = data["summary"]["destinations"]["no-op"]
    about = f"segops {_md(data['segops_version'])} · state serial {data['state']['serial']}"
    if unchanged:
        about += f" · {_plural(unchanged, 'destination')} unchanged"
    where = (
        " ".join(artifact.split())  # Markdown from the CI job (a link, an artifact name)
        if artifact
        else "run `segops show plan.segplan` on the plan saved by `segops plan -out plan.segplan`"
    )
    return f"<sub>{about}</sub>\n\nFull plan: {where}"


# -- escaping and masking ----------------------------------------------------------------


def _md(text: str) -> str:
    """Return `text` safe in Markdown: no HTML, no line break, no table cell or emphasis."""
    text = _CONTROL.sub(" ", text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_ESCAPE.sub(lambda m: "\\" + m.group(), text)


def _code(text: str) -> str:
    # A code span cannot escape a backtick, nor a pipe in a table: a tag around escaped text can.
    return f"<code>{_md(text)}</code>"


def _html(text: str) -> str:
    """Return `text` safe in an HTML block (a <summary>), where Markdown is not parsed."""
    text = _CONTROL.sub(" ", text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;").replace("`", "&#96;")


def _value(value: Any) -> str:
    return "(unset)" if value is None else _code(json.dumps(value, ensure_ascii=False))


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _masked(value: str) -> str:
    """Return an identifier as its first characters and its length, never all of it."""
    shown = min(_PREFIX, len(value) // 2)
    return f"{_code(value[:shown] + '…')} ({len(value)} chars)"
