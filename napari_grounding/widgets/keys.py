"""The reviewer's keys on the canvas, as named functions napari accepts.

Keys are chosen so that no layer keymap claims them (a selected Labels layer binds digits and
many letters), so they work whichever layer is active, and so that napari's window does not
either: its menus take Alt with their underlined letter (File, View, Layers, Plugins, Window,
Help) and its actions some Alt keys (Alt-C copies a screenshot). What was bound before is
restored when the panel goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..session import Session
from ..windows import CT_WINDOWS

# key (napari's spelling) -> (what it does, action on the session)
KEYS: dict[str, tuple[str, Callable[[Session], Any]]] = {
    "Down": ("next item", lambda s: s.step_item(1)),
    "Up": ("previous item", lambda s: s.step_item(-1)),
    "PageDown": ("next case", lambda s: s.next_case(1)),
    "PageUp": ("previous case", lambda s: s.next_case(-1)),
    "Alt-I": ("next view", lambda s: s.next_image()),
    "Alt-A": ("accept", lambda s: s.record("accept")),
    "Alt-R": ("reject", lambda s: s.record("reject")),
    "Alt-X": ("needs fix", lambda s: s.record("needs_fix")),
    "Alt-U": ("unsure", lambda s: s.record("unsure")),
    "N": ("next unreviewed", lambda s: s.next_unreviewed()),
    "Alt-M": ("comment", lambda s: s.request_comment()),
    "Alt-E": ("errors", lambda s: s.toggle_errors()),
    **{f"Alt-{n}": (f"{name} window", lambda s, name=name: s.set_window(name))
       for n, name in enumerate(CT_WINDOWS, start=1)},
}


def qt_sequence(key: str) -> str:
    """napari's "Alt-1" as Qt's "Alt+1"."""
    return key.replace("-", "+")


def key_for(description: str) -> str:
    return next(k for k, (d, _) in KEYS.items() if d == description)


def _named(description: str, session: Session, action: Callable[[Session], Any]):
    def grounding_key(_viewer: Any) -> None:
        action(session)

    name = "grounding_" + description.replace(" ", "_")
    grounding_key.__name__ = grounding_key.__qualname__ = name
    grounding_key.__doc__ = description.capitalize()
    return grounding_key


class KeyBindings:
    """Binds ``KEYS`` on a viewer for a session; ``detach`` puts back what was there."""

    def __init__(self, viewer: Any, session: Session):
        self.viewer, self.session = viewer, session
        self._previous: dict[str, Any] | None = None

    @property
    def attached(self) -> bool:
        return self._previous is not None

    def attach(self) -> None:
        if self.attached:
            return
        self._previous = {}
        for key, (description, action) in KEYS.items():
            bound = _named(description, self.session, action)
            self._previous[key] = self.viewer.bind_key(key, bound, overwrite=True)

    def detach(self) -> None:
        if not self.attached:
            return
        for key, previous in self._previous.items():
            self.viewer.bind_key(key, previous, overwrite=True)
        self._previous = None
