"""A weather environment whose verify burns CPU (PBKDF2, about 17 ms of CPU on the project's 2-core box), for
measuring how `gym-grpc serve --workers N` spreads CPU-heavy work over cores (bench/workers.py). Not for real use: it
blocks the event loop on purpose, as a CPU-bound verifier written without care does."""

from __future__ import annotations

import hashlib

from gym_grpc.environments.weather.environment import WeatherEnvironment, WeatherState
from gym_grpc.protocol.rollouts import Task, VerifyResult
from gym_grpc.protocol.types import Response

ITERATIONS = 40_000


class BusyWeather(WeatherEnvironment):
    async def verify(self, state: WeatherState, task: Task, response: Response) -> VerifyResult:
        hashlib.pbkdf2_hmac("sha256", response.final_answer.encode(), b"salt", ITERATIONS)
        return await super().verify(state, task, response)
