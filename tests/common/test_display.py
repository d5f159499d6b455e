"""Stored values as people read them on pages: no Python reprs (None, True, dicts) in audit details or lineage."""

from __future__ import annotations

from django.template import Context, Template

from common.templatetags.display import human, recipe_text


def test_human_shows_no_python_reprs() -> None:
    assert human(None) == "—"
    assert human(True) == "yes" and human(False) == "no"
    assert human(0.1 + 0.2) == "0.3"
    assert human({"version": 2, "canary": None, "parity": True}) == "version: 2; canary: —; parity: yes"
    assert human({"evidence": {"release": 2, "rate": 0.25}}) == "evidence: release: 2; rate: 0.25"
    assert human(["a", 1, None]) == "a, 1, —"
    assert human({}) == "—"


def test_a_recipe_reads_as_words() -> None:
    assert recipe_text({"target": "onnx", "quantization": "int8"}) == "ONNX, int8 quantization"
    assert recipe_text({"target": "tflite", "quantization": "none"}) == "TFLite"
    assert recipe_text({"target": "onnx", "quantization": "none", "rewrite": "zipmap"}) == "ONNX (rewrite: zipmap)"
    assert recipe_text({}) == "—"


def test_what_a_user_typed_is_still_escaped() -> None:
    page = Template("{% load display %}{{ data|human }}").render(Context({"data": {"reason": "<b>x</b>"}}))
    assert page == "reason: &lt;b&gt;x&lt;/b&gt;"
