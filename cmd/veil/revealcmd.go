package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/veil-project/veil/reveal"
)

// cmdReveal asks a reveal API for the values behind tokens and prints one line per token:
// its status, a tab, and the value (JSON) when there is one.
func cmdReveal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("veil reveal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("VEIL_URL", "https://127.0.0.1:8443"), "reveal API base `URL` (default $VEIL_URL)")
	keyFlag := fs.String("key", "", "API `key` (prefer $VEIL_API_KEY: a flag shows in the process list)")
	caFile := fs.String("ca", "", "PEM `file` of the CA (or self-signed certificate) to trust instead of the system roots")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: veil reveal [--url U] [--key K | $VEIL_API_KEY] [--ca FILE] TOKEN…\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if fs.NArg() == 0 {
		return &usageError{errors.New("reveal needs at least one token")}
	}
	key := reveal.APIKey(*keyFlag)
	if key == "" {
		key = reveal.APIKey(os.Getenv("VEIL_API_KEY"))
	}
	if key == "" {
		return &usageError{errors.New("no API key: set $VEIL_API_KEY or --key")}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("reading --ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return &usageError{errors.New("--ca holds no PEM certificate")}
		}
	}
	c := &reveal.Client{BaseURL: *url, Key: key, HTTPClient: &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc},
	}}
	res, err := c.Reveal(ctx, fs.Args())
	if err != nil {
		return err
	}
	for _, r := range res {
		if len(r.Value) == 0 {
			fmt.Fprintf(stdout, "%s\n", r.Status)
			continue
		}
		fmt.Fprintf(stdout, "%s\t%s\n", r.Status, r.Value)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
