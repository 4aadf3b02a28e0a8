"""Local fake provider APIs, real HTTP servers on free 127.0.0.1 ports.

Built from each provider's documented request and response shapes, with
state and fault injection; end-to-end tests point `FLEET_<NAME>_URL` (and
`FLEET_<NAME>_KEY`) at `fake.url` (and `fake.api_key`).
"""

from tests.fakes.hypercore import HypercoreFake
from tests.fakes.ionet import IoNetFake
from tests.fakes.lambdalabs import LambdaFake
from tests.fakes.runpod import RunPodFake
from tests.fakes.server import FakeProvider, Reply, Request
from tests.fakes.vast import VastFake

__all__ = [
    "FakeProvider",
    "HypercoreFake",
    "IoNetFake",
    "LambdaFake",
    "Reply",
    "Request",
    "RunPodFake",
    "VastFake",
]
