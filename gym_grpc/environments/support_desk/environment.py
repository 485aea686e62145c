"""A support desk that needs a conversation: the customer's request is vague and only the customer (a simulated
user, `gym_grpc.agents.user_sim`) knows which order to cancel. The agent sees the orders and can cancel them; it
must ask the user which one.

A task row:

    {"responses_create_params": {"input": [{"role": "user", "content": "Hi, I need to cancel an order."}]},
     "orders": {"A-12": "red kettle", "B-77": "blue kettle"},
     "target_order": "B-77",
     "user_instructions": "You ordered a blue kettle (order B-77) by mistake and want that order cancelled."}

`user_instructions` is for the simulated user only (the agent never sends task fields to its model). Reward 1.0 when
exactly the target order was cancelled, else 0.0; `cancelled` lists what was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gym_grpc.environments.base import Environment, tool
from gym_grpc.errors import VerifyError
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import Response

ORDER_ID = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
NO_ARGS = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass
class Desk:
    orders: dict[str, str]
    cancelled: list[str] = field(default_factory=list)


class SupportDeskEnvironment(Environment[Desk]):
    async def seed(self, task: Task, seed: int | None) -> Desk:
        orders = task.extras.get("orders")
        if not isinstance(orders, dict):
            raise ValueError("a support_desk task needs an 'orders' object (order id -> item)")
        return Desk(orders={str(k): str(v) for k, v in orders.items()})

    @tool("List the customer's open orders (id and item).", NO_ARGS)
    async def list_orders(self, desk: Desk) -> str:
        return json.dumps({i: item for i, item in desk.orders.items() if i not in desk.cancelled})

    @tool("Cancel one of the customer's orders by its id.", ORDER_ID)
    async def cancel_order(self, desk: Desk, order_id: str) -> str:
        if order_id not in desk.orders:
            raise ValueError(f"no order {order_id!r}")
        if order_id in desk.cancelled:
            raise ValueError(f"order {order_id} is already cancelled")
        desk.cancelled.append(order_id)
        return json.dumps({"order_id": order_id, "status": "cancelled"})

    async def verify(self, desk: Desk, task: Task, response: Response) -> VerifyResult:
        target = task.extras.get("target_order")
        if not isinstance(target, str):
            raise VerifyError("a support_desk task needs a 'target_order'")
        return VerifyResult(
            reward=1.0 if desk.cancelled == [target] else 0.0,
            metrics={"cancelled": ",".join(desk.cancelled), "right_order": target in desk.cancelled},
        )
