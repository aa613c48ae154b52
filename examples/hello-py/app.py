"""The Python hello example: answers on /hello-py, and on /hello-py/count tells how many
requests this instance has served, which shows whether instances are fresh or reused."""

from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from componentize_py_types import Ok

# What this instance has kept from the requests it served: a fresh instance starts with none.
# Each request keeps 2 MiB of written memory, so a reset that missed the heap a request grew
# past the image would show here too.
_kept: list[bytes] = []


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        if path.endswith("/count"):
            _kept.append(bytes([7]) * (2 << 20))
            text = f"{len(_kept)}\n"
        else:
            text = f"Hello from Python! You asked for {path}\n"
        headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
        response = OutgoingResponse(headers)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(text.encode())
        OutgoingBody.finish(body, None)
