"""What a command runs with: its arguments, the output sink, and a client made on first use."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from modeldeck.client import Client
from modeldeck.output import Output, Result


@dataclass
class Context:
    args: argparse.Namespace
    output: Output
    _client: Client | None = field(default=None, init=False)

    @property
    def client(self) -> Client:
        # Made on first use: `login` makes its own, and a usage error needs none.
        if self._client is None:
            self._client = Client.from_environment()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


Handler = Callable[[Context], Result]
