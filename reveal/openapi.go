package reveal

import (
	_ "embed"
	"net/http"
	"strconv"
)

// OpenAPI is the OpenAPI 3 description of the API, served at GET /v1/openapi.json.
// openapi_test.go checks it against the handlers: every path, status and field.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(OpenAPI)))
	if r.Method == http.MethodGet {
		w.Write(OpenAPI)
	}
}
