// Package shredproof holds the attacker's proof of issue 19 (keys that die with the data they
// seal): shred_test.go seals entries on a 1 h and a 24 h ledger into each store (Badger, Redis,
// DynamoDB), snapshots everything an attacker could keep (the encrypted topics, the store's rows,
// the key store, the KMS root) and opens every token with an offline opener that ignores expiry. It has no code.
package shredproof
