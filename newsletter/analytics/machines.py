"""Which clicks and opens are a machine's: link scanners, image proxies, prefetchers.

Security gateways fetch every link of a message within seconds of its delivery, often
with a HEAD request or a tool's User-Agent; Apple's Mail Privacy Protection and the
webmails' image proxies fetch every image whether or not anyone reads. Such hits are
counted apart ("machine clicks", "machine opens") and never as a reader's interest.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from newsletter.analytics.hits import Hit

# Tools and gateways that fetch links on a reader's behalf, by their User-Agent.
SCANNER_AGENTS = re.compile(
    r"bot\b|bot/|crawl|spider|scan|preview|slurp|python|curl/|wget/|go-http|java/|okhttp|"
    r"httpclient|libwww|headless|phantom|barracuda|mimecast|proofpoint|urldefense|safelinks|"
    r"symantec|messagelabs|trendmicro|forti|ironport|cisco|zscaler|sophos|checkpoint|"
    r"check point|microsoft office|msoffice|outlook-android-linkscan",
    re.IGNORECASE,
)
# Image proxies that fetch a message's images for the reader, opened or not.
IMAGE_PROXY_AGENTS = re.compile(r"googleimageproxy|ggpht\.com|yahoomailproxy", re.IGNORECASE)
# Apple's Mail Privacy Protection fetches with a bare "Mozilla/5.0" and nothing more.
BARE_AGENT = "Mozilla/5.0"
# Two different stories of one copy opened this close together: no person reads that
# fast; a gateway walking the message's links does.
BURST_SECONDS = 1.5
# A click this soon after its copy left us is a gateway's (known only for readers who
# allowed per-reader records: only then is the copy's delivery known).
EARLY_SECONDS = 10.0


class Reason:
    HEAD = "head"
    SCANNER = "scanner"
    BURST = "burst"
    EARLY = "early"
    PROXY = "proxy"


@dataclass(frozen=True)
class Judged:
    hit: Hit
    machine: bool
    reason: str | None


def judge(hits: Sequence[Hit], *, sent_at: Mapping[int, float] | None = None) -> list[Judged]:
    """Each hit, a reader's or a machine's (and why). `sent_at` gives, by delivery, when
    its copy was sent (seconds since the epoch), for the copies that name one."""
    sent_at = sent_at or {}
    bursts = _in_bursts([h for h in hits if h.kind == "click"])
    judged = []
    for hit in hits:
        reason = _reason(hit, sent_at) or (Reason.BURST if id(hit) in bursts else None)
        judged.append(Judged(hit, reason is not None, reason))
    return judged


def _reason(hit: Hit, sent_at: Mapping[int, float]) -> str | None:
    if hit.head:
        return Reason.HEAD
    agent = hit.agent.strip()
    if not agent or SCANNER_AGENTS.search(agent):
        return Reason.SCANNER
    if hit.kind == "open":
        if hit.apple or agent == BARE_AGENT or IMAGE_PROXY_AGENTS.search(agent):
            return Reason.PROXY
        return None
    sent = sent_at.get(hit.delivery_id) if hit.delivery_id is not None else None
    if sent is not None and hit.at - sent < EARLY_SECONDS:
        return Reason.EARLY
    return None


def _in_bursts(clicks: Sequence[Hit]) -> set[int]:
    """The clicks (by id()) that come within BURST_SECONDS of a click on another story
    of the same copy."""
    by_copy: dict[tuple[int, str], list[Hit]] = defaultdict(list)
    for hit in clicks:
        by_copy[(hit.digest_id, hit.copy)].append(hit)
    found: set[int] = set()
    for copy_clicks in by_copy.values():
        copy_clicks.sort(key=lambda h: h.at)
        for i, hit in enumerate(copy_clicks):
            for later in copy_clicks[i + 1 :]:
                if later.at - hit.at > BURST_SECONDS:
                    break
                if later.article_id != hit.article_id:
                    found.update((id(hit), id(later)))
    return found
