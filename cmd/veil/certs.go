package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veil-project/veil/config"
	"github.com/veil-project/veil/internal/atomicfile"
)

// Names of the files veil certs writes in its directory.
const (
	certFileName = "cert.pem"
	keyFileName  = "key.pem"
)

// cmdCerts makes a self-signed certificate for the reveal API, unless one is already there: the
// docker-compose init service runs it on every start, and a restart must not change the
// certificate clients were told to trust.
func cmdCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("certs")
	dir := fs.String("dir", "", "`directory` to write cert.pem and key.pem to (required)")
	hosts := fs.String("host", "localhost,127.0.0.1", "comma-separated DNS `names` and IP addresses the certificate is valid for")
	days := fs.Int("days", 365, "validity in `days`")
	force := fs.Bool("force", false, "replace an existing certificate")
	pos, err := parseFlags(fs, helps["certs"], args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return &usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(pos, " "))}
	}
	if *dir == "" {
		return &usageError{errors.New("certs needs --dir")}
	}
	if *days < 1 || *days > 3650 {
		return &usageError{errors.New("--days must be between 1 and 3650")}
	}
	certPath, keyPath := filepath.Join(*dir, certFileName), filepath.Join(*dir, keyFileName)
	if !*force {
		if fp, err := certFingerprint(certPath); err == nil {
			if _, err := os.Stat(keyPath); err == nil {
				fmt.Fprintf(stdout, "kept %s (sha256 %s)\n", certPath, fp)
				return nil
			}
		}
	}
	fp, err := writeSelfSigned(*dir, config.SplitList(*hosts), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (sha256 %s)\n", certPath, keyPath, fp)
	return nil
}

// writeSelfSigned writes a fresh self-signed certificate and its key to dir and returns the
// certificate's SHA-256 fingerprint. The key is written 0600 through a temporary file renamed
// into place, so a reader never sees half a key.
func writeSelfSigned(dir string, hosts []string, validity time.Duration) (string, error) {
	if len(hosts) == 0 {
		return "", &usageError{errors.New("the certificate needs at least one host")}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating certificate directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"veil (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: clients trust it as its own root (veil reveal --ca)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", fmt.Errorf("creating certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, keyFileName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", fmt.Errorf("writing certificate key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, certFileName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", fmt.Errorf("writing certificate: %w", err)
	}
	return fingerprint(der), nil
}

// certFingerprint returns the SHA-256 fingerprint of the first certificate in a PEM file.
func certFingerprint(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s holds no PEM certificate", path)
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return fingerprint(blk.Bytes), nil
}

// fingerprint is the colon-separated SHA-256 of a DER certificate, as openssl x509 -fingerprint
// -sha256 prints it.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
