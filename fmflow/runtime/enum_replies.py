"""Lenient reading of enum values in model replies (LANGUAGE.md §3).

Models answer a classification as `Refund`, `"refund"`, `**refund**` or
`The answer is refund.` An enum-typed reply is the member whose name appears
in it, case and surrounding quotes or prose aside, when exactly one does.
Inside a JSON reply, a value where the type has an enum is matched to a
member by its whole text, case aside (`"category": "Refund"`); no prose
search there, since a JSON string is already one value.

Flow inputs, mocks and tool results stay strict: only model replies, which
are free text by nature, are read this way.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from ..types import DictType, EnumType, ListType, OptionalType, StructType, Type


class EnumNotFound(Exception):
    """A reply naming no member, or several; ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def member_by_text(members: tuple[str, ...], text: str) -> str | None:
    """The member ``text`` is, exactly or else case aside (one member only); else None."""
    if text in members:
        return text
    folded = [m for m in members if m.casefold() == text.casefold()]
    return folded[0] if len(folded) == 1 else None


def member_in_prose(enum: EnumType, text: str) -> str:
    """The one member whose name appears in ``text`` as a word (an `_` in a name may be
    written as a space or `-`); EnumNotFound when none or several do."""
    spans = {m: [found.span() for found in _word_pattern(m).finditer(text)] for m in enum.members}
    found = [m for m in enum.members if spans[m] and not _inside_longer(spans[m], m, spans)]
    if len({m.casefold() for m in found}) == 1 and len(found) > 1:
        # Members differing only by case (`bug`, `Bug`): the one spelled as in the reply.
        exact = [m for m in found if re.search(rf"(?<![A-Za-z0-9_]){re.escape(m)}(?![A-Za-z0-9_])", text)]
        found = exact if len(exact) == 1 else found
    if len(found) == 1:
        return found[0]
    members = ", ".join(enum.members)
    if not found:
        raise EnumNotFound(f"the reply names none of the members of {enum.name} ({members})")
    raise EnumNotFound(f"the reply names several members of {enum.name} ({', '.join(found)}); "
                       f"answer with exactly one of: {members}")


def _inside_longer(own: list[tuple[int, int]], member: str, spans: dict[str, list[tuple[int, int]]]) -> bool:
    """Whether every place ``member`` appears is part of a longer member's name (`bug` in "bug report")."""
    def covered(start: int, end: int) -> bool:
        return any(s <= start and end <= e and e - s > end - start
                   for other, places in spans.items() if other != member for s, e in places)
    return all(covered(start, end) for start, end in own)


def _word_pattern(member: str) -> re.Pattern:
    words = r"[ _-]".join(re.escape(part) for part in member.split("_"))
    return re.compile(rf"(?<![A-Za-z0-9_]){words}(?![A-Za-z0-9_])", re.IGNORECASE)


def fold_enum_values(t: Type, value: Any, fields_of: Callable[[StructType], dict[str, Type]]) -> Any:
    """``value`` (JSON data) with each string where ``t`` has an enum replaced by the member
    it names case aside. Walks with a stack: recursive types may meet deep replies."""
    root = [value]
    stack: list[tuple[Type, Any, Any]] = [(t, root, 0)]
    while stack:
        current, holder, key = stack.pop()
        item = holder[key]
        while isinstance(current, OptionalType):
            current = current.inner
        if isinstance(current, EnumType) and isinstance(item, str):
            holder[key] = member_by_text(current.members, item.strip()) or item
        elif isinstance(current, ListType) and isinstance(item, list):
            stack.extend((current.item, item, i) for i in range(len(item)))
        elif isinstance(current, DictType) and isinstance(item, dict):
            stack.extend((current.value, item, k) for k in item)
        elif isinstance(current, StructType) and isinstance(item, dict):
            fields = fields_of(current)
            stack.extend((fields[k], item, k) for k in item if k in fields)
    return root[0]
