"""The `qwen3tts` command line: a thin front door on the engine (entry point: cli.main:main)."""
