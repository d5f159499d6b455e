"""What a delivery sends: the stable ModelDeck body or a Slack message, and the headers that sign it.

The body's schema per kind, the headers and how to verify them: docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
from datetime import datetime
from typing import Any

from webhooks.choices import PING, WebhookFormat

USER_AGENT = f"ModelDeck-Webhooks/{importlib.metadata.version('modeldeck')}"


def event_envelope(
    *, event_id: str, kind: str, team: str, created_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The ModelDeck body: the same keys for every kind, the kind's own fields under `data`."""
    return {"id": event_id, "type": kind, "team": team, "created_at": created_at.isoformat(), "data": data}


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions): a name or reason must stay text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _v(number: Any) -> str:
    return f"v{number}"


def _release_text(data: dict[str, Any]) -> str:
    text = f"{data.get('endpoint')}: release #{data.get('release')} {data.get('action')} {_v(data.get('primary'))}"
    if data.get("canary") is not None:
        text += f", canary {_v(data['canary'])} at {data.get('canary_percent')}%"
    if data.get("shadow") is not None:
        text += f", shadow {_v(data['shadow'])}"
    text += f" by {data.get('by') or 'a deleted user'}"
    if data.get("reason"):
        text += f": {data['reason']}"
    return text


def _alert_text(data: dict[str, Any]) -> str:
    text = (
        f"{data.get('endpoint')}: alert '{data.get('rule_name')}' fired on {_v(data.get('version'))}: "
        f"{data.get('metric')} {data.get('value')} over {data.get('threshold')}"
    )
    if data.get("action_taken"):
        text += f" ({data['action_taken']})"
    return text


def _job_text(data: dict[str, Any]) -> str:
    text = f"{data.get('model')} {_v(data.get('version'))}: {data.get('kind')} job {data.get('status')}"
    if data.get("result_version") is not None:
        text += f", made {_v(data['result_version'])}"
    if data.get("error"):
        text += f": {str(data['error'])[:200]}"
    return text


def _version_text(data: dict[str, Any]) -> str:
    archived = ", archived" if data.get("archived") else ""
    return f"{data.get('model')} {_v(data.get('number'))} ({data.get('format')}) is {data.get('status')}{archived}"


def _model_text(data: dict[str, Any]) -> str:
    return f"{data.get('model')} was {'archived' if data.get('archived') else 'unarchived'}"


def _rollout_text(data: dict[str, Any]) -> str:
    text = f"{data.get('endpoint')}: rollout #{data.get('rollout')} of {_v(data.get('version'))} {data.get('action')}"
    text += f", step {data.get('step')}/{data.get('steps')} at {data.get('percent')}% ({data.get('state')})"
    if data.get("outcome"):
        text += f": {data['outcome']}"
    return text


def _other_text(kind: str, data: dict[str, Any]) -> str:
    """Kinds without a sentence of their own (approval): the subject, then the short scalar fields."""
    subject = data.get("endpoint") or data.get("model") or ""
    fields = ", ".join(
        f"{key} {value}"
        for key, value in data.items()
        if key not in ("endpoint", "model") and isinstance(value, (str, int, float)) and len(str(value)) <= 80
    )
    return f"{subject + ': ' if subject else ''}{kind} {fields}".strip()


def slack_text(*, team: str, kind: str, data: dict[str, Any], webhook_name: str = "") -> str:
    """One human sentence for the event, e.g. "iris: release #4 promote v3 by dana"."""
    if kind == PING:
        text = f"ModelDeck test from team {team}: webhook '{webhook_name}' works."
    elif kind == "release":
        text = _release_text(data)
    elif kind == "rollout" and "rollout" in data:
        text = _rollout_text(data)
    elif kind == "alert":
        text = _alert_text(data)
    elif kind == "job":
        text = _job_text(data)
    elif kind == "version":
        text = _version_text(data)
    elif kind == "model":
        text = _model_text(data)
    else:
        text = _other_text(kind, data)
    return _slack_escape(f"[{team}] {text}")


def delivery_body(*, payload: dict[str, Any], format: str, webhook_name: str) -> bytes:
    """The raw body sent: the stored ModelDeck payload as is, or the Slack message made from it."""
    if format == WebhookFormat.SLACK:
        text = slack_text(
            team=payload["team"], kind=payload["type"], data=payload.get("data") or {}, webhook_name=webhook_name
        )
        return json.dumps({"text": text}, ensure_ascii=False).encode()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The X-ModelDeck-Signature value: HMAC-SHA256 of "<timestamp>.<raw body>" with the webhook's secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def delivery_headers(*, kind: str, delivery_id: str, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-ModelDeck-Event": kind,
        "X-ModelDeck-Delivery": delivery_id,
        "X-ModelDeck-Timestamp": str(timestamp),
        "X-ModelDeck-Signature": signature(secret=secret, timestamp=timestamp, body=body),
    }
