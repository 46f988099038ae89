"""Operations end to end: every metric family of docs/operations.md on a running daemon and
agent, and none with a per-VM label (issue #5's done-criterion)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.cloud import Cloud, boot, wait_for

from vmd.client import Client

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PER_VM_LABELS = {"uuid", "vm", "hostname", "task_id", "alias", "owner_uuid"}


def documented_families(section: str) -> set[str]:
    """Family names of the table under `### <section>` in docs/operations.md."""
    text = DOCS.read_text()
    start = text.index(f"### {section}")
    end = text.find("\n### ", start + 1)
    block = text[start:end if end != -1 else None]
    return set(re.findall(r"^\| `(vmd_[a-z_]+)` \|", block, flags=re.MULTILINE))


def metrics_url(cloud: Cloud, process: str) -> str | None:
    for line in cloud.log(process).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "metrics served":
            return str(entry["url"])
    return None


def scrape(url: str) -> dict[str, set[str]]:
    """Family name (as exposed, counters with `_total`) -> label names seen on its samples."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = found.setdefault(name, set())
        for sample in family.samples:
            labels.update(sample.labels)
    return found


async def test_every_documented_family_is_exposed_without_per_vm_labels(
    cloud: Cloud, admin: Client,
) -> None:
    await boot(cloud, admin)
    assert (await admin.start("web01.example.com", wait=True)).code == 200
    assert (await admin.stop("nope.example.com")).code == 404
    assert (await admin.status_list()).code == 200
    await wait_for(lambda: metrics_url(cloud, "daemon") and metrics_url(cloud, "agent-node1"))

    for process, section in (("daemon", "Daemon"), ("agent-node1", "Node agent")):
        documented = documented_families(section)
        assert len(documented) >= 6, (section, documented)
        url = metrics_url(cloud, process)
        assert url is not None
        exposed = scrape(url)
        missing = documented - set(exposed)
        assert not missing, f"{process}: documented but not exposed: {sorted(missing)}"
        for name, labels in exposed.items():
            assert not labels & PER_VM_LABELS, (process, name, labels)
    daemon = scrape(str(metrics_url(cloud, "daemon")))
    assert "kind" in daemon["vmd_requests_total"] and "code" in daemon["vmd_requests_total"]
