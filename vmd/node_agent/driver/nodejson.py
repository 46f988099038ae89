"""JSON from the node (vmadm's output and event stream), made safe to report.

vmadm is node.js: its `JSON.stringify` writes a lone UTF-16 surrogate in a string (an alias
or a customer metadata value a tenant chose) as a `\\ud800` escape, which Python's decoder
accepts. Such a string cannot be encoded as UTF-8, so the agent's report (or its log line)
holding it would raise, and the same VM would stop the agent again at every start: a
tenant's alias could take a compute node out of vmd's control. The node is not ours to
refuse, so what it says is kept and the lone surrogates become U+FFFD, as a UTF-8 decoder
does with bytes it cannot read (vmd.node_agent.driver.runner decodes output with
`errors="replace"` for the same reason).

The walk runs only when the text holds a `\\u` escape of a surrogate (`\\ud8`-`\\udf`, any
case), so ordinary output costs one substring scan.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE = re.compile("[\ud800-\udfff]")


def loads(text: str | bytes) -> Any:
    """`json.loads`, with every lone surrogate in a string (key or value) replaced by U+FFFD."""
    value = json.loads(text)
    escape = _ESCAPE.search(text) if isinstance(text, str) else _ESCAPE_BYTES.search(text)
    if escape is None:
        return value
    return _clean(value)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
