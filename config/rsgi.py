"""RSGI entry point (granian --interface rsgi): the same data plane as config/asgi.py, over granian's native interface.

An experiment measured by bench/serving.py against `make run`'s uvicorn + fast path; `make run` does not use it
(serving/rsgi.py says what it serves and what it does not).
"""

from __future__ import annotations

from config.asgi import application as asgi_application
from serving.rsgi import RSGIApplication

application = RSGIApplication(asgi_application)
