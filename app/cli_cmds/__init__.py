"""Sub-command implementations of the `lms-unlocked` CLI (thin: all logic lives in app.core)."""
