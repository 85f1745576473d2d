"""LM Studio Unlocked: install llama.cpp backends for hardware LM Studio's official packs refuse."""

__version__ = "0.1.0"
APP_NAME = "LM Studio Unlocked"
