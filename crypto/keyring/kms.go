package keyring

import (
	"context"
	"errors"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

// KMS is the subset of *kms.Client the keyring uses. *kms.Client satisfies it, and so does
// crypto/kmslocal.Provider.
type KMS interface {
	GenerateDataKey(ctx context.Context, in *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// ReEncrypter is the subset of *kms.Client needed to rewrap keys under another KMS key.
type ReEncrypter interface {
	KMS
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
}

// Encryption context keys binding a wrapped KEK to its app and period.
const (
	ContextApp    = "veil:app"
	ContextPeriod = "veil:period"
)

// EncryptionContext returns the KMS encryption context of the KEK of (app, period).
func EncryptionContext(app string, period int64) map[string]string {
	return map[string]string{ContextApp: app, ContextPeriod: strconv.FormatInt(period, 10)}
}

// KMSError is returned when a KMS call fails. Op is the KMS operation.
type KMSError struct {
	Op  string
	Err error
}

func (e *KMSError) Error() string { return "calling KMS " + e.Op + ": " + e.Err.Error() }
func (e *KMSError) Unwrap() error { return e.Err }

// permanentKMSCodes are KMS error codes that retrying cannot fix. A disabled key
// (DisabledException) or one in an unusable state (KMSInvalidStateException: disabled, pending
// deletion or import) is not among them: it is the deployment's key, not the record, that is at
// fault, and an operator can enable it again, so veil holds it as an outage and waits.
var permanentKMSCodes = map[string]bool{
	"InvalidCiphertextException":  true,
	"IncorrectKeyException":       true,
	"NotFoundException":           true,
	"AccessDeniedException":       true,
	"InvalidKeyUsageException":    true,
	"ValidationException":         true,
	"InvalidGrantTokenException":  true,
	"UnrecognizedClientException": true,
	"IncompleteSignature":         true,
	"InvalidSignatureException":   true,
}

// IsTransient reports whether err may go away on retry: KMS outages, throttling, timeouts and
// network failures, and a disabled KMS key. It is false for nil, for ErrKeyDestroyed,
// ErrInvalidApp and ErrClosed, for a cancelled context, and for KMS errors that reject the
// request itself (bad ciphertext, wrong context, unknown key, access denied).
//
// A veil process uses it at start, reading the media-link key (cmd/veil linkSecret): a KMS outage
// means waiting (readiness "keys" false, retried with backoff), a refusal means exit 4. The pipeline does not need it: a record is never to
// blame for a KMS failure, so every sealing failure is retried there (pipeline.Transient) and
// nothing is dead-lettered or let through unsealed (fail closed).
func IsTransient(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrKeyDestroyed),
		errors.Is(err, ErrInvalidApp),
		errors.Is(err, ErrClosed),
		errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrSealingRefused):
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		return !permanentKMSCodes[api.ErrorCode()]
	}
	var ke *KMSError
	// Anything else from a KMS call (connection refused, retries exhausted) is an outage.
	return errors.As(err, &ke)
}
