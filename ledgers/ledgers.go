// Package ledgers holds the table of the nine ledgers (name, TTL, which rule flags their entries)
// and the pure function that decides, for one entry and its app's settings, whether the entry is
// sensitive, which paths to encrypt, and why.
//
// Rules fail closed on every value they read: values are compared exactly, and only an explicit
// allow-list leaves an entry unflagged (thread.mode "bot"; user.type "user", "bot" or absent).
// Any other spelling ("Agent", "AGENT", "agent ", "System", "Bot") or an unknown value flags the
// entry and its sensitive fields are sealed; it is not dead-lettered, so the entry still flows.
package ledgers

import "time"

// AppSettings are the per-app switches of DESIGN §3. Both default to true (see DefaultAppSettings).
type AppSettings struct {
	Transcript bool
	Transport  bool
}

// DefaultAppSettings is what an app gets when its config says nothing.
var DefaultAppSettings = AppSettings{Transcript: true, Transport: true}

// Rule names which rule flags a ledger's entries.
type Rule uint8

const (
	RuleEvent     Rule = iota + 1 // transcript + category rule
	RuleTransport                 // app transport setting
	RuleMedia                     // app transcript setting (blob)
)

// Ledger is one row of the ledger table.
type Ledger struct {
	Name string
	TTL  time.Duration
	Rule Rule
}

// Decision is the outcome of Decide.
type Decision struct {
	Sensitive bool
	Paths     []string // field paths to encrypt (may include paths absent from the entry)
	Reason    string   // human-readable why, free of values
}
