"""A short embedded demo of the controller: a request in flight, a switch that drains it."""

from __future__ import annotations

import asyncio

from servermode.core import ModeController, Refused


async def main() -> None:
    controller = ModeController(drain_timeout=5)
    await controller.start()
    ticket = controller.admit("profile")
    switch = asyncio.create_task(controller.set_mode("maintenance", actor="demo"))
    await asyncio.sleep(0.2)
    try:
        controller.admit("profile")
    except Refused as refused:
        print(f"refused while draining: {refused} (retry in {refused.retry_after}s)")
    ticket.release()
    record = await switch
    print(f"switched {record.from_state} -> {record.to_state} in {record.duration_ms:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
