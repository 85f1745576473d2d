"""The PySide6 wizard: a thin face on app.core."""
