"""The greeter: exports weft:greet/greeter, called in-process by another component.

`weft build examples/greeter-py` picks the world named like the project, `greeter-py`.
"""

from typing import List

from wit_world import exports
from wit_world.exports.greeter import Greeting


class Greeter(exports.Greeter):
    def greet(self, name: str, tags: List[str]) -> Greeting:
        message = f"Hello, {name}! (from Python)"
        return Greeting(message=message, length=len(message), tags=[t.upper() for t in tags])
