"""Noticing, with plain Qt, that the widget is leaving: its dock removed, its window closed, the app quitting."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication


class CloseWatcher(QObject):
    """Calls ``on_close`` when the widget leaves its dock, its window closes or the application quits.

    Plain Qt, no napari internals: the widget's own ParentChange events, the
    ParentChange events of its ancestors (the dock goes into the main window
    after the widget goes into the dock), and the Close events of the
    top-level window it ends up in (``QWidget.window()``). napari's
    ``remove_dock_widget`` only un-parents the widget and closing the viewer
    only closes its window, so ``destroyed`` cannot be relied on.
    """

    def __init__(self, widget, on_close):
        super().__init__(widget)
        self._widget = widget
        self._on_close = on_close
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._quit)
        self._watch()

    def _quit(self):
        self._on_close(wait=True)

    def _watch(self):
        """Watch the widget and each of its ancestors (installing twice is a no-op in Qt).

        No reference to an ancestor is kept: it would keep the whole viewer alive.
        Former ancestors stay watched, and their events are ignored below.
        """
        obj = self._widget
        while obj is not None:
            obj.installEventFilter(self)
            obj = obj.parentWidget()

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        widget = getattr(self, "_widget", None)  # Qt may call in while Python tears us down
        if widget is None:
            return False
        kind = event.type()
        if kind == QEvent.Type.ParentChange:
            if obj is widget and widget.parent() is None:
                self._on_close(wait=False)
            else:
                self._watch()
        elif kind == QEvent.Type.Close and obj is not widget and obj is widget.window():
            if not event.spontaneous():
                # A programmatic close: viewer.close(), or napari's own File > Close after its confirmation.
                self._on_close(wait=True)
        elif kind == QEvent.Type.Hide and obj is widget.window() and obj is not widget and not event.spontaneous():
            # The window went away after a close the user asked for (a spontaneous Close may still be refused).
            self._on_close(wait=True)
        return False
