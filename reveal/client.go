package reveal

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client calls a reveal API. The zero HTTPClient is one with a 30-second timeout that speaks TLS
// 1.2 or newer and verifies the server against the system roots.
type Client struct {
	BaseURL    string // e.g. https://veil.internal:8443
	Key        APIKey
	HTTPClient *http.Client
}

// APIError is a reveal API answer other than 200. Message is the server's error text, which never
// holds a value.
type APIError struct {
	StatusCode int
	Message    string
	RequestID  string
	RetryAfter time.Duration // set on 429
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("reveal API: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// tokenLenGuess sizes the request buffer: a token of a short app id.
const tokenLenGuess = 120

// maxResponseBytes bounds what Reveal reads: 256 values of the largest entry, with room to spare.
const maxResponseBytes = 512 << 20

var defaultHTTPClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	},
}

// Reveal asks for the values behind tokens and returns one Result per token, in order. A non-nil
// error means no result: transport failures, or an *APIError.
func (c *Client) Reveal(ctx context.Context, tokens []string) ([]Result, error) {
	body := appendRevealRequest(make([]byte, 0, 32+len(tokens)*(tokenLenGuess+3)), tokens)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+"/v1/reveal", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building reveal request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+string(c.Key))
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	clear(body)
	if err != nil {
		return nil, fmt.Errorf("calling reveal API: %w", err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxResponseBytes {
		return nil, errors.New("reading reveal response: larger than the limit")
	}
	bp := bodyBufs.Get().(*[]byte)
	b, err := readBody(io.LimitReader(resp.Body, maxResponseBytes+1), *bp, resp.ContentLength)
	defer putBody(bp, b)
	if err != nil {
		return nil, fmt.Errorf("reading reveal response: %w", err)
	}
	if len(b) > maxResponseBytes {
		return nil, errors.New("reading reveal response: larger than the limit")
	}
	if resp.StatusCode != http.StatusOK {
		e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
		var er errorResponse
		if json.Unmarshal(b, &er) == nil {
			e.Message = er.Error
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, e
	}
	results, err := decodeRevealResponse(b)
	if err != nil {
		return nil, errors.New("decoding reveal response: not the expected JSON")
	}
	if len(results) != len(tokens) {
		return nil, fmt.Errorf("decoding reveal response: %d results for %d tokens", len(results), len(tokens))
	}
	return results, nil
}
