package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/veil-project/veil/internal/atomicfile"
	"github.com/veil-project/veil/reveal"
)

// defaultRevealURL is where veil reveal goes when neither --url, $VEIL_URL nor a running demo
// says otherwise: the default listen.api.
const defaultRevealURL = "https://127.0.0.1:8443"

// cmdReveal asks a reveal API for the values behind tokens and prints one line per token: its
// status, a tab, and the value (JSON) when there is one; with --json, the API's answer with each
// token beside its result. It returns a notOKError (exit 5) when any token was not ok.
func cmdReveal(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("reveal")
	url := fs.String("url", "", "reveal API base `URL` (default $VEIL_URL, else the running demo's, else "+defaultRevealURL+")")
	keyFlag := fs.String("key", "", "API `key` (prefer $VEIL_API_KEY: a flag shows in the process list)")
	caFile := fs.String("ca", "", "PEM `file` of the CA (or self-signed certificate) to trust instead of the system roots")
	dataDir := fs.String("data-dir", envOr("VEIL_DATA_DIR", "./veil-data"), "data `directory` of a running veil demo, to find its URL and certificate")
	asJSON := fs.Bool("json", false, "print the results as JSON: {\"results\":[{\"token\",\"status\",\"value\"}]}")
	timeout := fs.Duration("timeout", 30*time.Second, "request `timeout`")
	tokens, err := parseFlags(fs, helps["reveal"], args)
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		return &usageError{errors.New("reveal needs at least one token (see 'veil reveal --help')")}
	}
	key := reveal.APIKey(*keyFlag)
	if key == "" {
		key = reveal.APIKey(os.Getenv("VEIL_API_KEY"))
	}
	if key == "" {
		return &usageError{errors.New("no API key: set $VEIL_API_KEY or --key")}
	}
	base, ca := *url, *caFile
	if base == "" {
		base = os.Getenv("VEIL_URL")
	}
	if base == "" {
		if d, err := readDemoInfo(*dataDir); err == nil {
			base = d.URL
			if ca == "" {
				ca = d.CAFile
			}
		} else {
			base = defaultRevealURL
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("reading --ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return &usageError{fmt.Errorf("--ca %s holds no PEM certificate", ca)}
		}
	}
	c := &reveal.Client{BaseURL: base, Key: key, HTTPClient: &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc},
	}}
	res, err := c.Reveal(ctx, tokens)
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) && ca == "" {
		return fmt.Errorf("%w (a veil demo's certificate is trusted through %s in its data dir: pass --data-dir DIR, or --ca FILE)", err, demoInfoFile)
	}
	if err != nil {
		return err
	}
	notOK := 0
	for _, r := range res {
		if r.Status != reveal.StatusOK {
			notOK++
		}
	}
	if *asJSON {
		type item struct {
			Token  string          `json:"token"`
			Status reveal.Status   `json:"status"`
			Value  json.RawMessage `json:"value,omitempty"`
		}
		out := struct {
			Results []item `json:"results"`
		}{Results: make([]item, 0, len(res))}
		for i, r := range res {
			out.Results = append(out.Results, item{Token: tokens[i], Status: r.Status, Value: r.Value})
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		for _, r := range res {
			if len(r.Value) == 0 {
				fmt.Fprintf(stdout, "%s\n", r.Status)
				continue
			}
			fmt.Fprintf(stdout, "%s\t%s\n", r.Status, r.Value)
		}
	}
	if notOK > 0 {
		return &notOKError{notOK}
	}
	return nil
}

// demoInfo is what a running veil demo writes to <data_dir>/demo.json so that veil reveal finds
// its API without flags. It holds no secret: the API key is printed once, never stored.
type demoInfo struct {
	URL         string `json:"url"`
	CAFile      string `json:"ca_file,omitempty"`
	Fingerprint string `json:"sha256_fingerprint,omitempty"`
	PID         int    `json:"pid"`
}

const demoInfoFile = "demo.json"

func readDemoInfo(dataDir string) (demoInfo, error) {
	var d demoInfo
	b, err := os.ReadFile(filepath.Join(dataDir, demoInfoFile))
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("reading %s: %w", demoInfoFile, err)
	}
	if d.URL == "" {
		return d, fmt.Errorf("%s names no URL", demoInfoFile)
	}
	return d, nil
}

func writeDemoInfo(dataDir string, d demoInfo) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dataDir, demoInfoFile), append(b, '\n'), 0o600)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
