"""Signature-safe releases: promote, canary and shadow refuse a version that breaks the primary's signature unless
the change is allowed (audited); over the API, in the pages, and never for rollback or endpoint creation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from deployments.models import Release
from registry.models import ModelVersion, RegisteredModel
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_file

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]

X = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
PROBS = {"name": "probs", "datatype": "FP32", "shape": [-1, 3]}
# The bug: an endpoint serving a classifier's outputs, and a TFLite version whose only output is "output_0".
OUTPUT_0 = {"name": "output_0", "datatype": "FP32", "shape": [-1, 3]}


@dataclass
class Setup:
    dev: Member
    admin: Member
    model: RegisteredModel
    versions: dict[int, ModelVersion]


def with_signature(version: ModelVersion, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> ModelVersion:
    ModelVersion.objects.filter(pk=version.pk).update(signature={"inputs": inputs, "outputs": outputs})
    version.refresh_from_db()
    return version


@pytest.fixture
def setup(make_member, team_a, tmp_path: Path) -> Setup:
    """v1, v2: x [-1, 4] -> probs [-1, 3]; v3: probs [-1, 2] (a real 2-class file); v4: output_0 instead of probs;
    v5: x [-1, -1] (accepts more), probs [-1, 3]."""
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    admin = make_member(team=team_a, role=Role.ADMIN, username="boss")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = {seed: add_version(model, actor, tmp_path, seed) for seed in (1, 2)}
    path = onnx_file(tmp_path / "two-classes.onnx", classes=2, seed=3)
    upload = Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    versions[3] = model_version_create(actor=actor, model=model, upload=upload)
    assert versions[3].signature == {"inputs": [X], "outputs": [{**PROBS, "shape": [-1, 2]}]}
    versions[4] = with_signature(add_version(model, actor, tmp_path, 4), [X], [OUTPUT_0])
    versions[5] = with_signature(add_version(model, actor, tmp_path, 5), [{**X, "shape": [-1, -1]}], [PROBS])
    assert versions[1].signature == versions[2].signature == {"inputs": [X], "outputs": [PROBS]}
    dev.token_client().post("/api/v1/endpoints", {"name": "iris", "model": "alpha/iris", "version": 1}, format="json")
    return Setup(dev, admin, model, versions)


URL = "/api/v1/endpoints/iris"

OUTPUT_0_DIFFERENCES = [
    {
        "candidate": 4,
        "role": "canary",
        "tensor": "output",
        "name": "probs",
        "problem": "missing",
        "primary": {"datatype": "FP32", "shape": [-1, 3]},
        "version": None,
    },
    {
        "candidate": 4,
        "role": "canary",
        "tensor": "output",
        "name": "output_0",
        "problem": "added",
        "primary": None,
        "version": {"datatype": "FP32", "shape": [-1, 3]},
    },
]


def live(number: int = 0) -> tuple[int, str, int, int | None, int, int | None]:
    release = Release.objects.filter(endpoint__name="iris").order_by("-number").first()
    assert release is not None
    return (
        release.number,
        release.action,
        release.primary.number,
        release.canary.number if release.canary else None,
        release.canary_percent,
        release.shadow.number if release.shadow else None,
    )


def test_a_canary_with_other_outputs_is_refused_listing_each_difference(setup: Setup) -> None:
    response = setup.dev.token_client().post(f"{URL}/promote", {"version": 4, "canary_percent": 10}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "signature_mismatch",
            "message": "v4's inputs or outputs differ from the primary v1's: output 'probs' (FP32 [-1, 3]) is "
            "missing; output 'output_0' (FP32 [-1, 3]) is added. A release never changes the contract of 'iris' "
            "silently: allow the signature change to release it anyway.",
            "detail": {"primary": 1, "differences": OUTPUT_0_DIFFERENCES},
        }
    }
    assert live() == (1, "create", 1, None, 0, None)
    assert not AuditEvent.objects.filter(action="endpoint.canary").exists()


def test_promote_and_shadow_are_refused_too(setup: Setup) -> None:
    client = setup.dev.token_client()
    promoted = client.post(f"{URL}/promote", {"version": 3}, format="json")
    assert promoted.status_code == 409
    assert promoted.json()["error"]["detail"] == {
        "primary": 1,
        "differences": [
            {
                "candidate": 3,
                "role": "primary",
                "tensor": "output",
                "name": "probs",
                "problem": "shape",
                "primary": [-1, 3],
                "version": [-1, 2],
            }
        ],
    }
    # A compatible promote with an incompatible shadow: only the shadow is named.
    shadowed = client.post(f"{URL}/promote", {"version": 2, "shadow_version": 4}, format="json")
    assert shadowed.status_code == 409
    assert shadowed.json()["error"]["detail"] == {
        "primary": 1,
        "differences": [{**d, "role": "shadow"} for d in OUTPUT_0_DIFFERENCES],
    }
    assert shadowed.json()["error"]["message"].startswith(
        "shadow v4's inputs or outputs differ from the primary v1's: output 'probs'"
    )
    # Both at once: every difference of both, the version's first.
    both = client.post(f"{URL}/promote", {"version": 3, "canary_percent": 5, "shadow_version": 4}, format="json")
    assert [(d["candidate"], d["role"], d["name"]) for d in both.json()["error"]["detail"]["differences"]] == [
        (3, "canary", "probs"),
        (4, "shadow", "probs"),
        (4, "shadow", "output_0"),
    ]
    assert live() == (1, "create", 1, None, 0, None)


def test_allowing_the_change_releases_it_and_audits_the_differences(setup: Setup) -> None:
    response = setup.dev.token_client().post(
        f"{URL}/promote",
        {"version": 4, "canary_percent": 10, "allow_signature_change": True, "reason": "tflite trial"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json() == {
        "number": 2,
        "action": "canary",
        "primary": 1,
        "canary": 4,
        "canary_percent": 10,
        "shadow": None,
        "actor": "dev",
        "by": "dev",
        "rule": None,
        "reason": "tflite trial",
        "created_at": response.json()["created_at"],
    }
    assert live() == (2, "canary", 1, 4, 10, None)
    audit = AuditEvent.objects.get(action="endpoint.canary")
    assert audit.actor == setup.dev.user
    assert audit.data == {
        "endpoint": "iris",
        "release": 2,
        "primary": 1,
        "canary": 4,
        "canary_percent": 10,
        "shadow": None,
        "reason": "tflite trial",
        "by": "dev",
        "previous_release": 1,
        "signature_change": OUTPUT_0_DIFFERENCES,
    }


def test_the_flag_without_a_difference_changes_nothing(setup: Setup) -> None:
    client = setup.dev.token_client()
    response = client.post(f"{URL}/promote", {"version": 2, "allow_signature_change": True}, format="json")
    assert response.status_code == 201
    assert live() == (2, "promote", 2, None, 0, None)
    assert AuditEvent.objects.get(action="endpoint.promote").data == {
        "endpoint": "iris",
        "release": 2,
        "primary": 2,
        "canary": None,
        "canary_percent": 0,
        "shadow": None,
        "reason": "",
        "by": "dev",
        "previous_release": 1,
    }


def test_a_more_permissive_input_needs_no_flag(setup: Setup) -> None:
    response = setup.dev.token_client().post(f"{URL}/promote", {"version": 5}, format="json")
    assert response.status_code == 201, response.json()
    assert live() == (2, "promote", 5, None, 0, None)
    # ...but going back from v5 to a fixed width is refused: v2 takes fewer requests than v5 does.
    back = setup.dev.token_client().post(f"{URL}/promote", {"version": 2}, format="json")
    assert back.status_code == 409
    assert back.json()["error"]["detail"]["differences"] == [
        {
            "candidate": 2,
            "role": "primary",
            "tensor": "input",
            "name": "x",
            "problem": "shape",
            "primary": [-1, -1],
            "version": [-1, 4],
        }
    ]


def test_protected_endpoints_allow_the_change_for_admins_only(setup: Setup) -> None:
    setup.admin.token_client().patch(URL, {"protected": True}, format="json")
    body = {"version": 4, "allow_signature_change": True}
    refused = setup.dev.token_client().post(f"{URL}/promote", body, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_denied")
    assert live() == (1, "create", 1, None, 0, None)
    accepted = setup.admin.token_client().post(f"{URL}/promote", body, format="json")
    assert accepted.status_code == 201, accepted.json()
    assert live() == (2, "promote", 4, None, 0, None)
    assert AuditEvent.objects.get(action="endpoint.promote").data["signature_change"] == [
        {**d, "role": "primary"} for d in OUTPUT_0_DIFFERENCES
    ]


def test_the_check_is_against_the_current_primary(setup: Setup) -> None:
    client = setup.dev.token_client()
    assert (
        client.post(f"{URL}/promote", {"version": 4, "allow_signature_change": True}, format="json").status_code == 201
    )
    # v2 fits v1, the first primary, but not v4, the primary now.
    refused = client.post(f"{URL}/promote", {"version": 2, "canary_percent": 10}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["detail"]["primary"] == 4
    assert [(d["name"], d["problem"]) for d in refused.json()["error"]["detail"]["differences"]] == [
        ("output_0", "missing"),
        ("probs", "added"),
    ]
    assert live() == (2, "promote", 4, None, 0, None)


def test_a_live_canary_moves_its_share_without_the_flag_but_finishing_it_needs_it(setup: Setup) -> None:
    client = setup.dev.token_client()
    body = {"version": 4, "canary_percent": 10, "allow_signature_change": True}
    assert client.post(f"{URL}/promote", body, format="json").status_code == 201
    step = client.post(f"{URL}/promote", {"version": 4, "canary_percent": 50}, format="json")
    assert step.status_code == 201, step.json()
    assert live() == (3, "canary", 1, 4, 50, None)
    assert "signature_change" not in AuditEvent.objects.filter(action="endpoint.canary").latest("id").data
    # Making it the primary changes the contract for every caller: asked again.
    finish = client.post(f"{URL}/promote", {"version": 4}, format="json")
    assert (finish.status_code, finish.json()["error"]["code"]) == (409, "signature_mismatch")
    assert (
        client.post(f"{URL}/promote", {"version": 4, "allow_signature_change": True}, format="json").status_code == 201
    )
    assert live() == (4, "promote", 4, None, 0, None)


def test_rollback_and_endpoint_creation_are_never_refused_for_signatures(setup: Setup) -> None:
    client = setup.dev.token_client()
    assert (
        client.post(f"{URL}/promote", {"version": 4, "allow_signature_change": True}, format="json").status_code == 201
    )
    back = client.post(f"{URL}/rollback", {}, format="json")
    assert back.status_code == 201, back.json()
    assert live() == (3, "rollback", 1, None, 0, None)
    made = client.post("/api/v1/endpoints", {"name": "other", "model": "alpha/iris", "version": 4}, format="json")
    assert made.status_code == 201
    assert made.json()["release"]["primary"] == 4
    # Promoting the version that already serves is no change of signature either.
    again = client.post("/api/v1/endpoints/other/promote", {"version": 4, "reason": "re-promote"}, format="json")
    assert again.status_code == 201


def test_the_api_schema_documents_the_flag_and_who_made_a_release(setup: Setup) -> None:
    schema = setup.dev.token_client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    body = schema["paths"]["/api/v1/endpoints/{name}/promote"]["post"]["requestBody"]["content"]["application/json"]
    request = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
    assert request["properties"]["allow_signature_change"]["type"] == "boolean"
    assert "allow_signature_change" not in request.get("required", [])
    release = schema["components"]["schemas"]["ReleaseOutput"]["properties"]
    assert release["by"]["nullable"] is True and release["rule"]["nullable"] is True


# --- the endpoint page --------------------------------------------------------------------------------------------


def page_client(member: Member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


def test_the_page_shows_the_differences_before_the_confirm_step(setup: Setup) -> None:
    page = page_client(setup.dev).get("/endpoints/iris/").content.decode()
    # Compatible versions carry no table; incompatible ones say so on their button and have their table ready.
    assert 'data-signature="signature-v2"' not in page
    assert 'data-signature="signature-v4"' in page
    assert 'data-signature="signature-v3"' in page
    assert 'data-signature="signature-v5"' not in page
    table = page.split('<template id="signature-v4">', 1)[1].split("</template>", 1)[0]
    rows = [row.split("</tr>", 1)[0] for row in table.split("<tbody>", 1)[1].split("<tr>")[1:]]
    assert rows == [
        '<td data-label="Tensor"><span>output <code>probs</code></span></td>'
        '<td data-label="Problem">missing from this version</td>'
        '<td data-label="Primary v1"><code>FP32 [-1, 3]</code></td>'
        '<td data-label="This version v4"><code>—</code></td>',
        '<td data-label="Tensor"><span>output <code>output_0</code></span></td>'
        '<td data-label="Problem">added by this version</td>'
        '<td data-label="Primary v1"><code>—</code></td>'
        '<td data-label="This version v4"><code>FP32 [-1, 3]</code></td>',
    ]
    assert "<th>Primary v1</th><th>This version v4</th>" in table
    assert 'data-testid="signature-confirm"' in page and "Allow the signature change" in page


def test_a_page_submit_without_the_flag_is_refused_with_the_differences(setup: Setup) -> None:
    client = page_client(setup.dev)
    refused = client.post("/endpoints/iris/", {"operation": "canary", "version": "4", "canary_percent": "10"})
    assert refused.status_code == 409
    html = refused.content.decode()
    assert 'data-testid="signature-refused"' in html
    assert "Refused: v4 changes the signature" in html
    assert (
        '<td data-label="Tensor"><span>output <code>output_0</code></span></td>'
        '<td data-label="Problem">added by this version</td>' in html
    )
    # The refusal offers the same release again, with the change allowed by a checkbox that must be ticked.
    form = html.split('class="signature-allow"', 1)[1].split("</form>", 1)[0]
    assert 'name="csrfmiddlewaretoken"' in form
    assert '<input type="hidden" name="operation" value="canary">' in form
    assert '<input type="hidden" name="version" value="4">' in form
    assert '<input type="hidden" name="canary_percent" value="10">' in form
    assert '<input type="checkbox" name="allow_signature_change" required>' in form
    assert live() == (1, "create", 1, None, 0, None)

    allowed = client.post(
        "/endpoints/iris/",
        {"operation": "canary", "version": "4", "canary_percent": "10", "allow_signature_change": "on"},
    )
    assert allowed.status_code == 302
    assert live() == (2, "canary", 1, 4, 10, None)
    assert AuditEvent.objects.get(action="endpoint.canary").data["signature_change"] == OUTPUT_0_DIFFERENCES


def test_the_page_escapes_tensor_names(setup: Setup) -> None:
    evil = "<img src=x onerror=alert(1)>"
    with_signature(setup.versions[4], [X], [{**OUTPUT_0, "name": evil}])
    client = page_client(setup.dev)
    page = client.get("/endpoints/iris/").content.decode()
    refused = client.post("/endpoints/iris/", {"operation": "promote", "version": "4"}).content.decode()
    for html in (page, refused):
        assert evil not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
