package kmsfake_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/veil-project/veil/internal/kmsfake"
)

func TestRejectsUnsignedAndMalformed(t *testing.T) {
	fake := kmsfake.New(kmsfake.Config{KeyIDs: []string{"k"}})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	signed := "AWS4-HMAC-SHA256 Credential=AKID/20261122/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
	tests := []struct {
		name   string
		auth   string
		target string
		ctype  string
		status int
		code   string
	}{
		{"no authorization", "", "TrentService.GenerateDataKey", "application/x-amz-json-1.1", 400, "MissingAuthenticationTokenException"},
		{"not sigv4", "Bearer x", "TrentService.GenerateDataKey", "application/x-amz-json-1.1", 400, "IncompleteSignatureException"},
		{"other service", strings.Replace(signed, "/kms/", "/s3/", 1), "TrentService.GenerateDataKey", "application/x-amz-json-1.1", 400, "IncompleteSignatureException"},
		{"unknown operation", signed, "TrentService.CreateKey", "application/x-amz-json-1.1", 400, "UnknownOperationException"},
		{"wrong content type", signed, "TrentService.GenerateDataKey", "application/json", 400, "SerializationException"},
		{"unknown key", signed, "TrentService.GenerateDataKey", "application/x-amz-json-1.1", 400, "NotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader(`{"KeyId":"nope","KeySpec":"AES_256"}`))
			req.Header.Set("Content-Type", tt.ctype)
			req.Header.Set("X-Amz-Target", tt.target)
			req.Header.Set("X-Amz-Date", "20261122T100000Z")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Type    string `json:"__type"`
				Message string `json:"message"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || body.Type != tt.code || body.Message == "" {
				t.Errorf("%s: status %d, __type %q, message %q; want %d, %q and a message", tt.name, resp.StatusCode, body.Type, body.Message, tt.status, tt.code)
			}
		})
	}
	if got := fake.Calls(kmsfake.OpGenerateDataKey); got != 1 {
		t.Errorf("Calls(GenerateDataKey) = %d, want 1 (only the well-formed unknown-key call)", got)
	}
}
