package pipeline

import (
	"context"
	"errors"

	"github.com/veil-project/veil/schemas"
)

// Failures of one record fall in three classes:
//   - bad input (permanentError): dead-lettered at once with its reason, never retried;
//   - transient (Transient): a service the record needs (the keys, the KMS, the key store, the
//     blob store) failed; the batch is retried without limit, since going on would mean skipping
//     encryption or losing the record: veil stops and waits (fail closed);
//   - anything else is unexpected: the batch is retried a few times (Config.RecordAttempts) and
//     then the record is dead-lettered with ReasonUnprocessable, so no record holds its partition.

// permanentError marks bad input: it goes to the dead-letter topic.
type permanentError struct {
	reason schemas.Reason
	field  string
}

func (e *permanentError) Error() string {
	if e.field == "" {
		return string(e.reason)
	}
	return string(e.reason) + ": " + e.field
}

type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Transient marks err as the failure of a service a record needs (keys, KMS, stores): a Stage
// returns it so that the processor retries the record without limit instead of dead-lettering it
// once its attempts are used up. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err}
}

// IsTransient reports whether err was marked by Transient, or is a context's cancellation or
// deadline (the processor is stopping or a call timed out: nothing the record is to blame for).
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
