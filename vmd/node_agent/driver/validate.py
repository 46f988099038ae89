"""Edge checks for every value that ends up in a vmadm command line.

The driver never uses a shell locally, but over SSH the command is one string parsed by the
node's login shell, and vmadm itself parses `key=value` start options (a comma splits
`cdrom=path,model`). So every value is checked here, before any argv is built: a failure
raises `ValidationError` (one line, the value shown with `repr` so a newline or a control
character is visible) and nothing runs. The checks are allow-lists, not deny-lists.
"""

from __future__ import annotations

import json
import math
import re

from vmd.model import JsonObject, VmUuid

from .errors import ValidationError

# Lowercase only: vmadm and vminfod key VMs by the lowercase form, and an uppercase
# variant would address a VM that does not exist rather than the intended one.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A plain file name: starts with a letter or digit (so never `-x`, `.` or `..`), then a
# small portable charset. No `,` (it would split vmadm's `cdrom=path,model`), no `=`,
# no `/`, no spaces, no shell metacharacters.
_ISO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+")
# vmadm's REQ_ID: a vmd task id (`0-a2327793-2600-423d-9f07`) or the agent's own
# `vmd-sync-<hex>`; a charset that needs no quoting anywhere.
_REQ_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
# A node path that goes into a zonecfg subcommand or a placeholder path: zonecfg splits its
# command line on blanks and `;`, so only a plain, absolute, portable path.
_NODE_PATH = re.compile(r"/[A-Za-z0-9._+/-]*")

BRANDS = frozenset({"kvm", "bhyve", "joyent", "joyent-minimal", "lx"})
HVM_BRANDS = frozenset({"kvm", "bhyve"})

ISO_NAME_MAX = 255
HOSTNAME_MAX = 253
REQ_ID_MAX = 128
NODE_PATH_MAX = 1024
TIMEOUT_MAX = 3600
PAYLOAD_MAX_BYTES = 1 << 20


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def uuid(value: object) -> VmUuid:
    """A VM uuid: 36 chars, lowercase hex, dashes at 8/13/18/23."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ValidationError(f"invalid VM uuid: {_show(value)}")
    return VmUuid(value)


def iso_name(value: object) -> str:
    """An ISO file name in the node's ISO directory (a plain name, never a path)."""
    if (
        not isinstance(value, str)
        or not value.isascii()
        or len(value) > ISO_NAME_MAX
        or not _ISO_NAME.fullmatch(value)
        or ".." in value
    ):
        raise ValidationError(f"invalid ISO image name: {_show(value)}")
    return value


def hostname(value: object) -> str:
    """A VM hostname (FQDN charset), used only to rewrite vmadm's messages."""
    if (
        not isinstance(value, str)
        or not value.isascii()
        or len(value) > HOSTNAME_MAX
        or not _HOSTNAME.fullmatch(value)
    ):
        raise ValidationError(f"invalid hostname: {_show(value)}")
    return value


def brand(value: object) -> str:
    """One of the brands vmd manages (docs/fsm.md §1)."""
    if not isinstance(value, str) or value not in BRANDS:
        raise ValidationError(f"invalid brand: {_show(value)} (one of {', '.join(sorted(BRANDS))})")
    return value


def timeout(value: object) -> int:
    """A stop timeout in whole seconds, 0..3600 (0 = vmadm's own default)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= TIMEOUT_MAX:
        raise ValidationError(f"invalid timeout: {_show(value)} (a whole number 0..{TIMEOUT_MAX})")
    return value


def run_timeout(value: object) -> float:
    """How long the driver lets one command run before killing it (seconds, > 0)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise ValidationError(f"invalid command timeout: {_show(value)}")
    return float(value)  # type: ignore[arg-type]


def payload(value: object) -> JsonObject:
    """A `vmadm update` payload: a JSON object with string keys, at most 1 MiB encoded."""
    if not isinstance(value, dict):
        raise ValidationError(f"invalid update payload: must be a JSON object, got {_show(value)}")
    if not all(isinstance(k, str) and k for k in value):
        raise ValidationError("invalid update payload: keys must be non-empty strings")
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid update payload: not JSON: {exc}") from None
    if len(encoded.encode()) > PAYLOAD_MAX_BYTES:
        raise ValidationError("invalid update payload: larger than 1 MiB")
    return value



def req_id(value: object) -> str:
    """The request id vmadm stamps into its per-invocation log (`REQ_ID`)."""
    if (
        not isinstance(value, str)
        or not value.isascii()
        or len(value) > REQ_ID_MAX
        or not _REQ_ID.fullmatch(value)
    ):
        raise ValidationError(f"invalid request id: {_show(value)}")
    return value


def node_path(value: object, what: str = "path") -> str:
    """An absolute path on the node (ISO directory, zonepath): plain characters, no `..`."""
    if (
        not isinstance(value, str)
        or not value.isascii()
        or len(value) > NODE_PATH_MAX
        or not _NODE_PATH.fullmatch(value)
        or ".." in value.split("/")
    ):
        raise ValidationError(f"invalid {what}: {_show(value)} (a plain absolute path)")
    return value.rstrip("/") or "/"
