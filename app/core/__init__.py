"""Qt-free logic of LM Studio Unlocked: probe, recommend, build, fetch, install and repair."""
