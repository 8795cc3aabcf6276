// Package soak holds the reliability and security suite that runs the real veil binary: a leak
// scan of every place veil writes under mixed load with canaries, SIGKILLs during that load with an
// exactly-once check, and faults (KMS unreachable, store down, broker restarted, analytics disk
// full) that veil must ride out without writing plaintext or losing entries. The package has no
// code outside its tests; soakbroker is the broker process the tests stop and restart.
//
// `go test ./internal/soak/` runs the bounded variants (they are part of make test); the flag
// -soak (make soak) runs the larger ones.
package soak
