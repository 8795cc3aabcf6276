package config

import (
	"cmp"
	"path/filepath"
)

// The layout of the data directory: where each local component keeps its files when the
// configuration does not name another place.

// StoreDir is the embedded (Badger) store: <data_dir>/store.
func (c *Config) StoreDir() string { return filepath.Join(c.DataDir, "store") }

// KeysDir is the file key store: <data_dir>/keys.
func (c *Config) KeysDir() string { return filepath.Join(c.DataDir, "keys") }

// BrokerDir is what the embedded broker keeps: <data_dir>/broker.
func (c *Config) BrokerDir() string { return filepath.Join(c.DataDir, "broker") }

// BlobDir is the local blob store: blob.dir, or <data_dir>/blobs.
func (c *Config) BlobDir() string { return cmp.Or(c.Blob.Dir, filepath.Join(c.DataDir, "blobs")) }

// BlobStagingDir is where local staging references may point: blob.staging_dir, or
// <data_dir>/staging.
func (c *Config) BlobStagingDir() string {
	return cmp.Or(c.Blob.StagingDir, filepath.Join(c.DataDir, "staging"))
}

// AnalyticsDir is the local Parquet sink: analytics.dir, or <data_dir>/analytics.
func (c *Config) AnalyticsDir() string {
	return cmp.Or(c.Analytics.Dir, filepath.Join(c.DataDir, "analytics"))
}

// PrincipalsPath is the principals file: reveal.principals_file, or <data_dir>/principals.yaml.
func (c *Config) PrincipalsPath() string {
	return cmp.Or(c.Reveal.PrincipalsFile, filepath.Join(c.DataDir, "principals.yaml"))
}

// LegacyRootKeyPath is where versions before kms.local.root_key_path kept the local root key,
// inside the data directory (see RootKeyPath).
func (c *Config) LegacyRootKeyPath() string { return filepath.Join(c.DataDir, "root.key") }
