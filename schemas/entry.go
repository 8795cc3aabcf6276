// Package schemas defines the transcript entry that producers publish, decodes it strictly
// (bounded size and depth, valid UTF-8, no duplicate or unknown keys, required fields present),
// reads and writes field values by dotted path, and holds the registry that names the sensitive
// fields of each entry type.
//
// Decoding errors never carry input values: they name the field and the reason only, so they are
// safe to log and to put in dead-letter records.
package schemas

import "time"

// Entry is one transcript entry: one JSON object per Kafka record, keyed by thread id.
type Entry struct {
	ID             string     `json:"id"`
	AppID          string     `json:"app_id"`
	Ledger         string     `json:"ledger"`
	Type           string     `json:"type"`
	TS             time.Time  `json:"ts"`
	Thread         Thread     `json:"thread,omitzero"`
	User           User       `json:"user,omitzero"`
	Sensitive      *bool      `json:"sensitive,omitempty"`
	SensitivePaths []string   `json:"sensitive_paths,omitempty"`
	Component      *Component `json:"component,omitempty"`
	// Trigger describes the incoming event a trigger response answers.
	Trigger *Trigger `json:"trigger,omitempty"`
	// Data holds the type-specific payload. Values are the JSON decoding of the payload:
	// map[string]any, []any, string, float64 (or json.Number-like), bool or nil.
	Data map[string]any `json:"data,omitempty"`
}

// Thread is the conversation thread an entry belongs to.
type Thread struct {
	ID   string `json:"id,omitempty"`
	Mode string `json:"mode,omitempty"` // "bot", "agent", "prechat", …
}

// User is the author of an entry.
type User struct {
	ID   string `json:"id,omitempty"`
	Type string `json:"type,omitempty"` // "user", "bot", "agent", "system"
}

// Component is the component that produced a component response.
type Component struct {
	ID        string `json:"id,omitempty"`
	Sensitive *bool  `json:"sensitive,omitempty"` // default true
}

// Trigger is the incoming event that a trigger response answers.
type Trigger struct {
	EntryID   string `json:"entry_id,omitempty"`
	Sensitive bool   `json:"sensitive,omitempty"`
}

// Reason is a machine-readable cause for rejecting an entry; it is what the dead-letter record
// carries.
type Reason string

const (
	ReasonMalformedJSON Reason = "malformed_json"
	ReasonTooLarge      Reason = "too_large"
	ReasonTooDeep       Reason = "too_deep"
	ReasonInvalidUTF8   Reason = "invalid_utf8"
	ReasonDuplicateKey  Reason = "duplicate_key"
	ReasonUnknownField  Reason = "unknown_field"
	ReasonMissingField  Reason = "missing_field"
	ReasonInvalidField  Reason = "invalid_field"
	ReasonUnknownLedger Reason = "unknown_ledger"
	ReasonTypeLedger    Reason = "type_ledger_mismatch"
	ReasonUnknownApp    Reason = "unknown_app"
	ReasonForgedToken   Reason = "forged_token"
	ReasonTimestamp     Reason = "timestamp_out_of_range"
	// ReasonUnprocessable: processing the record failed again and again for no reason veil knows
	// (not bad input it recognizes, not an outage); it was set aside so that it does not hold
	// its partition.
	ReasonUnprocessable Reason = "unprocessable"
)

// Limits bound what Decode accepts. The zero value means the defaults below.
type Limits struct {
	MaxBytes int // default 1 MiB
	MaxDepth int // default 32 levels of nesting, counting the entry object itself
}

const (
	DefaultMaxBytes = 1 << 20
	DefaultMaxDepth = 32
)
