package awsload_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/veil-project/veil/internal/awsload"
	"github.com/veil-project/veil/internal/leakcheck"
)

// noAmbient keeps the machine's AWS environment and shared files out of the test.
func noAmbient(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

func TestLoad(t *testing.T) {
	noAmbient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		s       awsload.Settings
		wantErr string
	}{
		{"no region", awsload.Settings{}, "loading AWS config: no region configured"},
		{"key id without secret", awsload.Settings{Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE"}, "loading AWS config: access key id without secret access key"},
		{"region and static keys", awsload.Settings{Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t-never-printed", SessionToken: "tok"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := awsload.Load(ctx, tc.s)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Load(%s) = %v, want %q", tc.name, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Region != tc.s.Region {
				t.Errorf("Load(%s).Region = %q, want %q", tc.name, cfg.Region, tc.s.Region)
			}
			creds, err := cfg.Credentials.Retrieve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if creds.AccessKeyID != tc.s.AccessKeyID || creds.SecretAccessKey != tc.s.SecretAccessKey || creds.SessionToken != tc.s.SessionToken {
				t.Errorf("Load(%s) credentials = %q/%q, want the static ones", tc.name, creds.AccessKeyID, creds.SessionToken)
			}
		})
	}
}

// TestLoadRegionFromEnvironment: with no region set, the SDK's chain (AWS_REGION) supplies it.
func TestLoadRegionFromEnvironment(t *testing.T) {
	noAmbient(t)
	t.Setenv("AWS_REGION", "ca-central-1")
	cfg, err := awsload.Load(context.Background(), awsload.Settings{AccessKeyID: "a", SecretAccessKey: "b"})
	if err != nil || cfg.Region != "ca-central-1" {
		t.Fatalf("Load = %q, %v, want ca-central-1", cfg.Region, err)
	}
}

// TestSettingsRedact: every way Settings print or log shows the region and the key id, and never
// the secret key or the session token.
func TestSettingsRedact(t *testing.T) {
	s := awsload.Settings{Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t-never-printed", SessionToken: "t0ken-never-printed"}
	leakcheck.Printed(t, s, []string{s.SecretAccessKey, s.SessionToken}, "eu-west-1", "AKIDEXAMPLE")
	if got, want := s.String(), "region=eu-west-1 key=AKIDEXAMPLE secret=[redacted] session_token=[redacted]"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (awsload.Settings{Region: "eu-west-1"}).String(), "region=eu-west-1 key="; got != want {
		t.Errorf("String() without keys = %q, want %q", got, want)
	}
}
