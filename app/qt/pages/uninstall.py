"""Uninstall: the backends this tool installed, with size and date; remove (backed up) and restore."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from app.core.flow import PageId
from app.core.lmstudio import install, prefs
from app.core.lmstudio.backends import list_backends
from app.qt.errors import show_error
from app.qt.pages.base import FlowPage, confirm, para, push, row
from app.qt.text import format_size


def folder_size(path: Any) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def removal_question(chosen: list[Any], in_use: str) -> str:
    """The confirmation text; it says loudly when a ticked backend is the one LM Studio uses."""
    names = "\n".join(f"• {b.ident}" for b in chosen)
    text = f"Remove these backends from LM Studio?\n\n{names}\n\nA backup is kept; Restore brings them back."
    if in_use and any(b.ident == in_use for b in chosen):
        text = (f"LM Studio uses {in_use} for GGUF models right now. After removing it, LM Studio falls back to "
                "one of its own backends — which may not run on this computer.\n\n" + text)
    return text


class UninstallPage(FlowPage):
    page_id = PageId.UNINSTALL

    def __init__(self) -> None:
        super().__init__()
        self.status = self.add(para(name="Uninstall status"))
        self.tree = self.add(QTreeWidget())
        self.tree.setAccessibleName("Installed backends")
        self.tree.setHeaderLabels(["Backend", "Size", "Installed"])
        self.tree.setRootIsDecorated(False)
        self.tree.setMinimumHeight(100)
        self.lay.setStretchFactor(self.tree, 1)
        self.remove_button = push("&Remove the ticked backends…", self._on_remove_clicked,
                                  tip="Asks first; a backup is kept so you can restore them")
        self.restore_button = push("R&estore what was removed", self._on_restore_clicked)
        self.lay.addLayout(row(None, self.restore_button, self.remove_button))
        self.result = para(name="Uninstall result")
        self.lay.addWidget(self.result)
        self.backends: list[Any] = []
        self.removed: list[Any] = []

    def initializePage(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        st = self.wiz().state
        try:
            backends = list_backends(st.require_home())
        except Exception as exc:
            self.status.setText("The backends could not be listed.")
            show_error(self, exc, title="Uninstall")
            backends = []
        self.backends = [b for b in backends if getattr(b, "ours", False)]
        self.tree.clear()
        for b in self.backends:
            when = datetime.fromtimestamp(b.folder.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            item = QTreeWidgetItem([b.ident or b.folder.name, format_size(folder_size(b.folder)), when])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Unchecked)
            self.tree.addTopLevelItem(item)
        for c in range(3):
            self.tree.resizeColumnToContents(c)
        n = len(self.backends)
        self.status.setText(
            "This tool has not installed any backend here." if n == 0
            else f"{n} backend{'s' if n != 1 else ''} installed by this tool. Tick the ones to remove."
        )
        self.remove_button.setEnabled(n > 0)
        self.restore_button.setVisible(bool(self.removed))

    def selected_ident(self) -> str:
        """The backend LM Studio uses for GGUF models ('' when none or unreadable)."""
        try:
            sel = prefs.selected_for(self.wiz().state.require_home(), "gguf")
        except Exception:
            return ""
        return str(getattr(sel, "ident", "") or "")

    def checked(self) -> list[Any]:
        out = []
        for i, b in enumerate(self.backends):
            item = self.tree.topLevelItem(i)
            if item is not None and item.checkState(0) == Qt.CheckState.Checked:
                out.append(b)
        return out

    @Slot()
    def _on_remove_clicked(self) -> None:
        chosen = self.checked()
        if not chosen:
            self.result.setText("Tick at least one backend first.")
            return
        st = self.wiz().state
        if not confirm(self, "Remove these backends?", removal_question(chosen, self.selected_ident()),
                       yes="&Remove"):
            return
        try:
            done = []
            for b in chosen:
                plan = install.plan_uninstall(st.require_home(), b.ident)
                done.append(install.execute_uninstall(plan))
        except Exception as exc:
            show_error(self, exc, title="Uninstall failed")
            self.refresh()
            return
        self.removed = done
        names = ", ".join(b.ident for b in chosen)
        restored = [str(p) for r in done for p in r.restored]
        st.uninstall_summary = f"Removed {names}. A backup was kept; Restore brings it back." + (
            f" Put back what it had replaced: {', '.join(restored)}." if restored else "")
        self.result.setText(st.uninstall_summary)
        self.refresh()

    @Slot()
    def _on_restore_clicked(self) -> None:
        st = self.wiz().state
        try:
            for r in self.removed:
                install.restore_uninstall(r)  # an UninstallResult
        except Exception as exc:
            show_error(self, exc, title="Restore failed")
            return
        self.removed = []
        st.uninstall_summary = "The removed backends were restored."
        self.result.setText(st.uninstall_summary)
        self.refresh()
