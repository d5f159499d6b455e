"""Numbers in paths, headers and shapes: Unicode digits ("²" passes str.isdigit) and absurd sizes get a 4xx."""

from __future__ import annotations

import httpx
import pytest

from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

ONE_ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


# Superscript two (int() refuses it), Arabic-Indic one (int() reads it as 1), and hex.
@pytest.mark.parametrize("segment", ["\u00b2", "\u0661", "0x1"])
async def test_a_version_that_is_not_ascii_digits_is_not_deployed(
    deployed: Deployed, client: httpx.AsyncClient, segment: str
) -> None:
    response = await client.post(f"/v2/models/iris/versions/{segment}/infer", json=ONE_ROW, headers=deployed.auth())
    assert response.status_code == 404
    assert response.json() == {"error": f"version '{segment}' of 'iris' is not deployed (live: 1)"}
    response = await client.post(f"/v1/models/iris/versions/{segment}:predict", json={"instances": [[1, 2, 3, 4]]})
    assert response.status_code == 401  # no token: authentication still comes first


async def test_a_header_length_in_unicode_digits_is_a_400(deployed: Deployed, client: httpx.AsyncClient) -> None:
    # b"\xb2" is "²" once the header is read as latin-1, as every HTTP server reads header bytes.
    headers = [
        (b"authorization", deployed.auth()["Authorization"].encode()),
        (b"inference-header-content-length", b"\xb2"),
        (b"content-type", b"application/octet-stream"),
    ]
    response = await client.post("/v2/models/iris/infer", content=b"{}", headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "Inference-Header-Content-Length must be a number of bytes"}


@pytest.mark.parametrize("shape", [[0, 2**62], [2**31, 0], [0] * 33])
async def test_an_absurd_shape_with_no_data_is_a_400(deployed: Deployed, client: httpx.AsyncClient, shape) -> None:
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]}
    response = await client.post("/v2/models/iris/infer", json=body, headers=deployed.auth())
    assert response.status_code == 400
    assert response.json()["error"].endswith("a tensor has at most 32 dimensions of at most 2147483647 each")
