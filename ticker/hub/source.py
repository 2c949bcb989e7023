"""Which market's batches a web process follows: its own site's, from the current lease holder.

Every batch carries the market's identity (``site``, one random id per
database, and ``token``, the leader's fencing token; ticker/market/lease.py). A web
process learns its own site and the current token whenever it loads the
stored market. A batch from another site (two sites sharing one Redis
namespace) is ignored, with one ERROR per foreign site, instead of mixing
its prices into this site's feed; a batch from a leader older than the one
already seen (a stale leader's last words) is ignored too.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from ticker.market.lease import MarketIdentity

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    CURRENT = "current"  # the leader already followed
    NEW_LEADER = "new leader"  # this site's market, under a newer lease
    STALE = "stale"  # this site's market, from a leader that has since lost the lease
    FOREIGN = "foreign"  # another site's market


class FeedSource:
    """The site and leader this process follows, and the foreign markets it has heard (for the operator)."""

    def __init__(self) -> None:
        self.site: str | None = None  # unknown until the first load: every batch is taken
        self.token = 0
        self.foreign: dict[str, int] = {}  # foreign site -> batches ignored
        self._stale_logged: set[int] = set()

    def loaded(self, identity: MarketIdentity | None) -> None:
        """Called with the identity read with the stored market (start, resync)."""
        if identity is None:
            return
        if identity.site != self.site:
            self.site, self.token = identity.site, identity.token
        else:
            self.token = max(self.token, identity.token)

    def judge(self, message: dict[str, Any]) -> Verdict:
        """Called with every batch before it is applied."""
        if self.site is None:
            return Verdict.CURRENT
        site, token = message.get("site"), message.get("token", 0)
        if site != self.site:
            key = str(site)
            if key not in self.foreign:
                log.error(
                    "ignoring quote batches from another site's market (site %s, lease token %s) on this Redis "
                    "namespace; this web process belongs to site %s. Two sites share one channel-layer prefix: "
                    "give each its own TICKER_CHANNEL_PREFIX (or leave it unset: the default is one per database)%s",
                    site,
                    token,
                    self.site,
                    "" if site is not None else "; a market without a site id is older than this web process",
                )
            self.foreign[key] = self.foreign.get(key, 0) + 1
            return Verdict.FOREIGN
        if token < self.token:
            if token not in self._stale_logged:
                self._stale_logged.add(token)
                log.warning(
                    "ignoring batches from a market that lost its lease (token %d; the leader's token is %d)",
                    token,
                    self.token,
                )
            return Verdict.STALE
        if token > self.token:
            log.info("the market has a new leader (lease token %d, was %d)", token, self.token)
            self.token = token
            return Verdict.NEW_LEADER
        return Verdict.CURRENT
