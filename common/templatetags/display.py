"""Template filters that show stored values the way people read them (audit details, lineage)."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def human(value: Any) -> str:
    """A value as text: no Python `None`, `True` or `{'k': ...}` on a page (escaped by the template as usual)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {human(item)}" for key, item in value.items()) or "—"
    if isinstance(value, list | tuple):
        return ", ".join(human(item) for item in value) or "—"
    return str(value)


@register.filter
def recipe_text(recipe: Any) -> str:
    """A conversion recipe ({"target": "onnx", "quantization": "int8"}) in words: "ONNX, int8 quantization"."""
    if not isinstance(recipe, dict) or not recipe.get("target"):
        return human(recipe)
    text = {"onnx": "ONNX", "tflite": "TFLite"}.get(recipe["target"], str(recipe["target"]))
    quantization = recipe.get("quantization", "none")
    if quantization and quantization != "none":
        text += f", {quantization} quantization"
    rest = {key: item for key, item in recipe.items() if key not in ("target", "quantization")}
    return f"{text} ({human(rest)})" if rest else text
