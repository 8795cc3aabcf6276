// Package blob keeps the media of the blob ledger: each medium is encrypted with its own fresh
// media DEK in fixed-size, individually authenticated chunks (constant memory whatever the size;
// reordering, dropping, duplicating and truncating chunks are detected), the ciphertext goes to
// an object store (a local directory or S3), and the DEK is sealed like any sensitive field
// through crypto/envelope into the encrypted store. A blob token therefore opens the medium only
// while its store record is live: expiry, tenant erasure or destroyed app keys leave the
// ciphertext unreadable even if an object lingers, and Sweep deletes objects once their TTL
// ended. Media are read only through short-lived signed links (15 minutes by default, 60 at
// most). Plaintext never touches disk: only ciphertext is written, by every backend.
package blob
