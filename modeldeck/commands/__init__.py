"""The `modeldeck` commands, one module per area (huggingface_hub's `cli/` is the model).

Each module's `register(add)` adds its subcommands with their arguments; `modeldeck.cli` builds the parser from
`REGISTERS` and runs the chosen command's handler over the one output sink (`modeldeck.output`).
"""

from __future__ import annotations

from collections.abc import Callable

from modeldeck.commands import (
    approvals,
    archive,
    benchmark,
    convert,
    deploy,
    example,
    login,
    predict,
    push,
    releases,
    rollouts,
    status,
    versions,
)
from modeldeck.commands.arguments import CommandAdd

# In the order `modeldeck --help` lists the commands.
REGISTERS: tuple[Callable[[CommandAdd], None], ...] = (
    login.register,
    push.register,
    versions.register,
    convert.register,
    benchmark.register,
    deploy.register,
    releases.register,
    rollouts.register,
    approvals.register,
    archive.register,
    status.register,
    predict.register,
    example.register,
)
