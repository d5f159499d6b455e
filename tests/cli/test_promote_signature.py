"""`modeldeck promote` and signature changes: refused with each difference named (exit 5) unless
`--allow-signature-change` is given."""

from __future__ import annotations

import pytest

from teams.models import AuditEvent
from tests.cli.conftest import Cli
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db(transaction=True)


def test_promote_refuses_a_signature_change_unless_allowed(cli: Cli, tmp_path) -> None:
    assert cli("push", onnx_file(tmp_path / "three.onnx", seed=1), "--model", "alpha/iris").code == 0
    assert cli("push", onnx_file(tmp_path / "two.onnx", classes=2, seed=2), "--model", "alpha/iris").code == 0
    assert cli("deploy", "iris", "--model", "alpha/iris", "--version", "1").code == 0

    refused = cli("promote", "iris", "2", "--canary", "10")
    assert refused.code == 5
    assert refused.stderr.splitlines() == [
        "error: the signature differs from the primary v1's (1 difference):",
        "  v2 output 'probs': shape (primary: [-1, 3]; v2: [-1, 2])",
        "hint: `modeldeck promote ... --allow-signature-change` releases it anyway"
        " (admins only on protected endpoints)",
    ]
    as_json = cli("promote", "iris", "2", "--json")
    assert as_json.code == 5
    assert as_json.json["error"]["code"] == "signature_mismatch"
    assert as_json.json["error"]["detail"] == {
        "primary": 1,
        "differences": [
            {
                "candidate": 2,
                "role": "primary",
                "tensor": "output",
                "name": "probs",
                "problem": "shape",
                "primary": [-1, 3],
                "version": [-1, 2],
            }
        ],
    }

    allowed = cli("promote", "iris", "2", "--canary", "10", "--allow-signature-change", "--json")
    assert allowed.code == 0, allowed.stderr
    release = allowed.json["release"]
    assert (release["number"], release["action"], release["primary"], release["canary"]) == (2, "canary", 1, 2)
    audit = AuditEvent.objects.get(action="endpoint.canary")
    assert [d["name"] for d in audit.data["signature_change"]] == ["probs"]
