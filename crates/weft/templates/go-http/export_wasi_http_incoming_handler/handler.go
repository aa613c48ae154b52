// Package export_wasi_http_incoming_handler is {{name}}'s HTTP handler: `weft dev` serves it on
// http://127.0.0.1:8080/{{name}} and redeploys it on every save. The wasi_* packages beside it
// are bindings `weft build` generates from wit/ on every build.
package export_wasi_http_incoming_handler

import (
	"fmt"

	"wit_component/wasi_http_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Handle answers one request.
func Handle(request *wasi_http_types.IncomingRequest, responseOut *wasi_http_types.ResponseOutparam) {
	path := request.PathWithQuery().SomeOr("/")
	request.Drop()

	headers := wasi_http_types.MakeFields()
	headers.Append("content-type", []uint8("text/plain; charset=utf-8"))
	response := wasi_http_types.MakeOutgoingResponse(headers)
	body := response.Body().Ok()
	wasi_http_types.ResponseOutparamSet(responseOut, witTypes.Ok[*wasi_http_types.OutgoingResponse, wasi_http_types.ErrorCode](response))

	stream := body.Write().Ok()
	stream.BlockingWriteAndFlush([]uint8(fmt.Sprintf("Hello from {{name}}! You asked for %s\n", path)))
	stream.Drop()
	wasi_http_types.OutgoingBodyFinish(body, witTypes.None[*wasi_http_types.Fields]())
}
