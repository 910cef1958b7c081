"""The servers the page reached: their TLS certificate chains and what the resolver says of them."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

from . import tls
from .network import Hop, _short
from .state import CaptureState


async def certificates(s: CaptureState) -> list[dict[str, Any]]:
    """Each HTTPS origin's chain, validated; the chains go into ``certificates.pem``."""
    assert s.started is not None
    out = []
    seen: dict[str, Hop] = {}
    for hop in s.rec.order:
        sec = (hop.response or {}).get("securityDetails")
        if sec:
            p = urlsplit(hop.url)
            origin = f"{p.scheme}://{p.netloc}"
            seen.setdefault(origin, hop)

    async def chain_of(origin: str) -> list[bytes] | BaseException:
        try:
            return await asyncio.wait_for(s.rec.certificate(origin), max(1.0, min(10.0, s.left())))
        except Exception as e:
            return e

    # One round trip for all origins rather than one after the other; read in the origins' order.
    chains = await asyncio.gather(*(chain_of(origin) for origin in seen))
    pem_parts = []
    for (origin, hop), got in zip(seen.items(), chains, strict=True):
        sec = hop.response["securityDetails"]  # type: ignore[index]
        if isinstance(got, BaseException):
            chain: list[bytes] = []
            s.log("tls", f"could not read the certificate of {origin}: {_short(got)}")
        else:
            chain = got
        host = urlsplit(origin).hostname or ""
        check = tls.validate(chain, host, s.started, s.opt.trust_roots)
        entry = {
            "origin": origin,
            "protocol": sec.get("protocol"),
            "key_exchange": sec.get("keyExchange") or sec.get("keyExchangeGroup"),
            "cipher": sec.get("cipher"),
            "certificate": tls.describe(chain[0]) if chain else None,
            "chain_length": len(chain),
            "validation": check,
            "browser_security_state": (hop.response or {}).get("securityState"),
        }
        out.append(entry)
        if chain:
            pem_parts.append(
                f"# {origin}: certificate chain as received by the browser, leaf first\n{tls.to_pem(chain)}"
            )
        if check.get("self_signed"):
            s.warn(f"self-signed certificate at {origin}")
        if check.get("valid") is False:
            s.warn(f"the certificate of {origin} does not validate: {check.get('error')}")
        s.log("tls", f"certificate of {origin} recorded", valid=check.get("valid"))
    if pem_parts:
        s.add("certificates.pem", "application/x-pem-file", "certificates").write_text(
            "".join(pem_parts), "ascii"
        )
    return out


async def dns(s: CaptureState) -> list[dict[str, Any]]:
    """Per host: the addresses the browser connected to, and this machine's resolver's answer."""
    hosts: dict[str, set[str]] = {}
    for hop in s.rec.order:
        host = urlsplit(hop.url).hostname
        if host and hop.remote_ip:
            hosts.setdefault(host, set()).add(f"{hop.remote_ip}:{hop.remote_port}")
    loop = asyncio.get_running_loop()

    async def ask(host: str, seen: set[str]) -> dict[str, Any]:
        entry: dict[str, Any] = {"host": host, "browser_connected_to": sorted(seen)}
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), 3)
            entry["system_resolver"] = sorted({i[4][0] for i in infos})
        except (TimeoutError, OSError) as e:
            entry["system_resolver_error"] = str(e) or type(e).__name__
        return entry

    # All at once: the answer of one slow resolver must not wait for another's.
    return list(await asyncio.gather(*(ask(h, seen) for h, seen in sorted(hosts.items()))))
