"""The app icon, drawn with QPainter: an open padlock over a chip. `python -m app.qt.icon` writes resources/."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QLinearGradient, QPainter, QPainterPath, QPen, QPixmap

from app.core.paths import resource_path

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def draw_app_icon(size: int = 256) -> QImage:
    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    s = size / 256.0
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    # Rounded square background: deep teal to indigo.
    grad = QLinearGradient(QPointF(0, 0), QPointF(0, size))
    grad.setColorAt(0.0, QColor("#1f7a8c"))
    grad.setColorAt(1.0, QColor("#283c86"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(grad))
    p.drawRoundedRect(QRectF(8 * s, 8 * s, 240 * s, 240 * s), 48 * s, 48 * s)
    # Chip body with pins (the hardware).
    chip = QRectF(64 * s, 118 * s, 128 * s, 100 * s)
    pin_pen = QPen(QColor("#dfe9f3"), 8 * s)
    pin_pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pin_pen)
    for i in range(4):
        x = chip.left() + (i + 0.5) * chip.width() / 4
        p.drawLine(QPointF(x, chip.bottom()), QPointF(x, chip.bottom() + 16 * s))
    for i in range(3):
        y = chip.top() + (i + 0.75) * chip.height() / 3.5
        p.drawLine(QPointF(chip.left() - 16 * s, y), QPointF(chip.left(), y))
        p.drawLine(QPointF(chip.right(), y), QPointF(chip.right() + 16 * s, y))
    # Open shackle (the unlock), drawn before the body so the body covers its foot.
    shackle = QPainterPath()
    shackle.moveTo(92 * s, 122 * s)
    shackle.lineTo(92 * s, 84 * s)
    shackle.arcTo(QRectF(92 * s, 40 * s, 88 * s, 88 * s), 180, -180)
    shackle.lineTo(180 * s, 96 * s)
    sp = QPen(QColor("#f4c542"), 18 * s)
    sp.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(sp)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawPath(shackle)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#f4c542"))
    p.drawRoundedRect(chip, 14 * s, 14 * s)
    # Keyhole.
    p.setBrush(QColor("#283c86"))
    p.drawEllipse(QPointF(128 * s, 156 * s), 14 * s, 14 * s)
    p.drawRect(QRectF(122 * s, 160 * s, 12 * s, 34 * s))
    p.end()
    return img


def app_icon() -> QIcon:
    """The window icon: resources/icon.png when present (what the bundle ships), else drawn now."""
    icon = QIcon()
    path = resource_path("icon.png")
    if path.is_file():
        icon.addFile(str(path))
    else:
        for n in ICON_SIZES:
            icon.addPixmap(QPixmap.fromImage(draw_app_icon(n)))
    return icon


def write_icons(out_dir: Path) -> list[Path]:
    """resources/icon.png (256 px) and icon.ico (when Qt's ico writer is available)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    png = out_dir / "icon.png"
    if not draw_app_icon(256).save(str(png)):
        raise OSError(f"could not write {png}")
    written.append(png)
    ico = out_dir / "icon.ico"
    if draw_app_icon(256).save(str(ico), b"ICO"):
        written.append(ico)
    return written


if __name__ == "__main__":
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication(sys.argv)
    for f in write_icons(Path(sys.argv[1]) if len(sys.argv) > 1 else resource_path()):
        sys.stdout.write(f"{f}\n")
