"""The speech server (front door): `create_app(tts, scheduler, ServerSettings(...))`. Needs the
`[serve]` extra (FastAPI, uvicorn)."""
