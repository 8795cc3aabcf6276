package config

import (
	"path/filepath"
	"testing"
)

func TestDataDirLayout(t *testing.T) {
	def := &Config{DataDir: "/d"}
	set := &Config{DataDir: "/d", Blob: Blob{Dir: "/b", StagingDir: "/s"}, Analytics: Analytics{Dir: "/a"}}
	set.Reveal.PrincipalsFile = "/p.yaml"
	for _, tc := range []struct {
		name      string
		got, want string
	}{
		{"StoreDir", def.StoreDir(), filepath.Join("/d", "store")},
		{"KeysDir", def.KeysDir(), filepath.Join("/d", "keys")},
		{"BrokerDir", def.BrokerDir(), filepath.Join("/d", "broker")},
		{"LegacyRootKeyPath", def.LegacyRootKeyPath(), filepath.Join("/d", "root.key")},
		{"BlobDir default", def.BlobDir(), filepath.Join("/d", "blobs")},
		{"BlobDir set", set.BlobDir(), "/b"},
		{"BlobStagingDir default", def.BlobStagingDir(), filepath.Join("/d", "staging")},
		{"BlobStagingDir set", set.BlobStagingDir(), "/s"},
		{"AnalyticsDir default", def.AnalyticsDir(), filepath.Join("/d", "analytics")},
		{"AnalyticsDir set", set.AnalyticsDir(), "/a"},
		{"PrincipalsPath default", def.PrincipalsPath(), filepath.Join("/d", "principals.yaml")},
		{"PrincipalsPath set", set.PrincipalsPath(), "/p.yaml"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
