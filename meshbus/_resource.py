"""The shape every meshbus resource has: started by ``await`` or ``async with``, closed by
``close()`` or leaving the block."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, Self


class AsyncResource:
    """Mixin: ``await x`` and ``async with x`` call ``start()``; leaving the block calls
    ``close()``. Subclasses define both; ``close()`` must be idempotent."""

    async def start(self) -> Self:
        """Make the resource ready and return it."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the resource (idempotent)."""
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, Self]:
        return self.start().__await__()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
