"""Generate serving/grpc/generated/ from the .proto files in serving/grpc/protos/ (`make protos`).

The protos keep their published packages (`inference`, `tensorflow.serving`, `tensorflow`), and so do the clients
that speak them: tritonclient.grpc registers `inference.ModelInferRequest` in protobuf's default descriptor pool,
TensorFlow registers `tensorflow.TensorProto`. Two definitions of one name in one pool cannot be loaded together,
so the generated modules register in a private pool (serving.grpc.generated.pool), and import each other under
`serving.grpc.generated`, rewritten here after protoc. A process that loads both a client and the server (the tests)
then works, whatever was imported first.

Run with the project's venv: `.venv/bin/python -m serving.grpc.generate` (grpcio-tools is a dev dependency).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = HERE / "protos"
GENERATED = HERE / "generated"
PACKAGE = "serving.grpc.generated"

POOL_MODULE = '''"""ModelDeck's gRPC descriptor pool, apart from protobuf's default (see serving.grpc.generate)."""

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()
# The well-known types the protos import, added once so their files resolve in this pool too.
for _module in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_module.DESCRIPTOR.serialized_pb)
'''


def _rewrite(source: str, modules: set[str]) -> str:
    source = source.replace("_descriptor_pool.Default()", "_pool.POOL")
    source = source.replace(
        "from google.protobuf import descriptor_pool as _descriptor_pool\n",
        f"from google.protobuf import descriptor_pool as _descriptor_pool\nfrom {PACKAGE} import pool as _pool\n",
    )

    def local(match: re.Match[str]) -> str:
        package, module = match.group(1), match.group(2)
        if f"{package}.{module}" in modules:
            return f"from {PACKAGE}.{package} import {module}"
        return match.group(0)

    # `from tensorflow.core.framework import tensor_pb2 as ...`: one of ours, never the installed tensorflow.
    return re.sub(r"^from ([\w.]+) import (\w+_pb2(?:_grpc)?)\b", local, source, flags=re.MULTILINE)


def generate(out: Path = GENERATED) -> list[Path]:
    """Compile every proto into `out` (replacing what is there); return the files written."""
    import grpc_tools

    protos = sorted(str(path.relative_to(PROTOS)) for path in PROTOS.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        args = [f"-I{PROTOS}", f"-I{include}", f"--python_out={scratch}", f"--pyi_out={scratch}"]
        # protoc in a process of its own: grpc_tools' compiler crashes (SIGSEGV) in a process that has loaded
        # TensorFlow, whose own libprotobuf clashes with it, and the test run that checks the stubs loads both.
        command = [sys.executable, "-m", "grpc_tools.protoc", *args, *protos]
        if subprocess.run(command, check=False).returncode != 0:  # noqa: S603 -- our interpreter, our .proto paths
            raise SystemExit("protoc failed")
        files = sorted(Path(scratch).rglob("*.py*"))
        modules = {str(f.relative_to(scratch).with_suffix("")).replace("/", ".") for f in files if f.suffix == ".py"}
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        written = []
        for file in files:
            target = out / file.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_rewrite(file.read_text(), modules))
            written.append(target)
        for folder in {out, *(path.parent for path in written)}:
            while folder != out.parent:
                (folder / "__init__.py").touch()
                folder = folder.parent
        (out / "pool.py").write_text(POOL_MODULE)
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else GENERATED):
        print(path.relative_to(HERE.parent.parent) if path.is_relative_to(HERE.parent.parent) else path)
