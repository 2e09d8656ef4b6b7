"""The Python peer of `cargo xtask bench`: the token pattern Python projects ship today.

It follows Arize Phoenix's `src/phoenix/db/azure_auth.py` (github.com/Arize-ai/phoenix):
a SQLAlchemy asyncio engine whose `async_creator` opens an asyncpg connection with an Entra
token as the password, the token coming from a small shared cache:

- the cached token is served while more than 5 minutes of its life remain;
- an asyncio.Lock guards only the cache's read and write; the fetch happens OUTSIDE the
  lock, so concurrent creators that all find the cache empty all fetch ("a harmless race
  where two coroutines both refresh is acceptable; last write wins");
- up to 3 attempts with 2**attempt seconds of backoff; credential errors are not retried.

This is our own code written after that pattern, not a copy, so the bench compares like
with like: what matters is where the lock is and when the fetch happens.

Credential: Phoenix uses `DefaultAzureCredential`. The emulator exports
`AZURE_FEDERATED_TOKEN_FILE` (for the workload-identity rows of the demo), so here
`DefaultAzureCredential` would pick workload identity first. On App Service, where Phoenix
runs with a managed identity, the chain resolves to `ManagedIdentityCredential` over the
App Service protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), so that is the credential
used here, directly, with the user-assigned identity's `AZURE_CLIENT_ID`.

Environment (the emulator's exports): PGHOST, PGPORT, PGDATABASE, PGSSLROOTCERT,
PGAUTH_EMULATOR_AZURE_ROLE, AZURE_CLIENT_ID, IDENTITY_ENDPOINT, IDENTITY_HEADER.

Modes (each prints one JSON object on stdout; a token is never printed):

    phoenix_peer.py herd [CHECKOUTS [POOL_SIZE]]   cold engine, pool_size=20, max_overflow=0,
                                                   200 concurrent checkouts of SELECT current_user
    phoenix_peer.py opens N CONCURRENCY            NullPool engine: every checkout opens a new
                                                   connection; reports opens_per_s
    phoenix_peer.py versions                       the installed package versions
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata

# The packages whose behaviour the figures depend on; their versions go into bench.json.
PACKAGES = ("sqlalchemy", "asyncpg", "azure-identity", "azure-core", "aiohttp", "greenlet")

# The Azure Database for PostgreSQL audience, as Phoenix requests it.
SCOPE = "https://ossrdbms-aad.database.windows.net/.default"

# Phoenix refreshes when less than this remains of the token's life.
REFRESH_BUFFER_S = 300


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = sys.version.split()[0]
    return found


@dataclass
class TokenCache:
    # repr=False: the token must not end up in a log line or a traceback's locals dump.
    token: str | None = field(default=None, repr=False)
    expires_on: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Not in Phoenix: counts get_token calls so the peer can report its own view too.
    fetches: int = 0


def make_creator(credential, cache: TokenCache):
    """The async_creator: one cached token per new connection, asyncpg with verified TLS."""
    import asyncpg
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError

    host = os.environ["PGHOST"]
    port = int(os.environ.get("PGPORT", "5432"))
    database = os.environ.get("PGDATABASE", "postgres")
    user = os.environ["PGAUTH_EMULATOR_AZURE_ROLE"]
    # verify-full, like the Rust side: the emulator's CA, hostname (here an IP) checked.
    tls = ssl.create_default_context(cafile=os.environ["PGSSLROOTCERT"])

    async def cached_token() -> str:
        async with cache.lock:
            now = time.time()
            if cache.token and cache.expires_on and cache.expires_on > now + REFRESH_BUFFER_S:
                return cache.token
        # The fetch runs outside the lock, as in Phoenix: every creator that found the
        # cache stale fetches. This is the behaviour the herd figure measures.
        for attempt in range(3):
            try:
                cache.fetches += 1
                result = await credential.get_token(SCOPE)
                async with cache.lock:
                    cache.token = result.token
                    cache.expires_on = result.expires_on
                return result.token
            except asyncio.CancelledError:
                raise
            except (CredentialUnavailableError, ClientAuthenticationError):
                raise
            except Exception as exc:
                if attempt == 2:
                    raise RuntimeError("no Azure access token after 3 attempts") from exc
                await asyncio.sleep(2**attempt)
        raise AssertionError("unreachable")

    async def creator():
        token = await cached_token()
        return await asyncpg.connect(
            host=host, port=port, user=user, password=token, database=database, ssl=tls
        )

    return creator


def describe(exc: BaseException) -> str:
    # Type and message only: neither asyncpg's nor azure-identity's messages carry the token.
    return f"{type(exc).__name__}: {exc}"


async def checkout(engine, text) -> str:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT current_user"))
        return result.scalar_one()


async def herd(checkouts: int, pool_size: int) -> dict:
    from azure.identity.aio import ManagedIdentityCredential
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    credential = ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"])
    cache = TokenCache()
    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=make_creator(credential, cache),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=120,
    )
    start = time.perf_counter()
    results = await asyncio.gather(
        *(checkout(engine, text) for _ in range(checkouts)), return_exceptions=True
    )
    seconds = time.perf_counter() - start
    failures = [r for r in results if isinstance(r, BaseException)]
    users = sorted({r for r in results if isinstance(r, str)})
    await engine.dispose()
    await credential.close()
    return {
        "mode": "herd",
        "checkouts": checkouts,
        "pool_size": pool_size,
        "failures": len(failures),
        "first_error": describe(failures[0]) if failures else None,
        "users": users,
        "cache_fetches": cache.fetches,
        "seconds": round(seconds, 3),
        "packages": versions(),
    }


async def opens(n: int, concurrency: int) -> dict:
    from azure.identity.aio import ManagedIdentityCredential
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    credential = ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"])
    cache = TokenCache()
    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=make_creator(credential, cache),
        poolclass=NullPool,
    )
    # Warm the token cache and the dialect's first-connect initialisation, so the figure
    # is opens with a cached token, like the Rust side's warm engine.
    await checkout(engine, text)
    remaining = n
    failures: list[BaseException] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                await checkout(engine, text)
            except Exception as exc:  # counted, the run goes on
                failures.append(exc)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    await engine.dispose()
    await credential.close()
    return {
        "mode": "opens",
        "opens": n,
        "concurrency": concurrency,
        "failures": len(failures),
        "first_error": describe(failures[0]) if failures else None,
        "seconds": round(seconds, 3),
        "opens_per_s": round(n / seconds, 1) if seconds > 0 else None,
        "cache_fetches": cache.fetches,
        "packages": versions(),
    }


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, args = argv[0], [int(a) for a in argv[1:]]
    if mode == "herd" and len(args) <= 2:
        out = asyncio.run(herd(*(args + [200, 20][len(args):])))
    elif mode == "opens" and len(args) == 2 and args[0] > 0 and args[1] > 0:
        out = asyncio.run(opens(args[0], args[1]))
    elif mode == "versions" and not args:
        out = versions()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(out), flush=True)
    return 1 if out.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
