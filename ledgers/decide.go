package ledgers

import (
	"slices"

	"github.com/veil-project/veil/schemas"
)

// Reasons Decide gives. They are fixed strings, so they never carry entry values.
const (
	reasonUnknownType   = "unknown type: whole data (fail closed)"
	reasonUnknownLedger = "unknown ledger: whole data (fail closed)"
	reasonExplicit      = "entry flagged sensitive: true"
	reasonPathsOnly     = "sensitive_paths marked by producer"
	reasonTransportOn   = "transport entry, app transport on"
	reasonTransportOff  = "transport entry, app transport off"
	reasonTranscriptOff = "app transcript off"
	reasonMedia         = "media, app transcript on"
	reasonNotBot        = "event rule: thread mode not bot"
	reasonStaffUser     = "event rule: user type agent or system"
	reasonBotMode       = "event rule: bot mode, ordinary user"
	reasonOddUser       = "event rule: user type not one of user, bot or absent (fail closed)"
	reasonComponentOn   = "component response, component sensitive"
	reasonComponentOff  = "component response, component not sensitive"
	reasonTriggerOn     = "trigger response, incoming event sensitive"
	reasonTriggerOff    = "trigger response, incoming event not sensitive"
	reasonNoCategory    = "no rule for category: registry fields (fail closed)"
	pathsSuffix         = "; plus sensitive_paths"
)

// The values a rule reads are compared exactly, and only these leave an entry unflagged: any
// other value (another spelling such as "Agent", "agent ", "BOT", an empty or a new value) flags
// it. A rule never guesses what a value it does not know means: it fails closed.
//
// botMode is the one thread.mode value under which an ordinary event is not sensitive (an absent
// mode is not bot mode). ordinaryUserTypes are the user.type values under which an ordinary
// bot-mode event is not sensitive: "user", "bot", and "" (the entry has no user, so no author of
// a staff type; the mode alone decides). agent and system are sensitive by the event rule;
// anything else is sensitive because it is not known.
const botMode = "bot"

var ordinaryUserTypes = []string{"user", "bot", ""}

// Decide says whether e is sensitive under app's settings and which paths to encrypt. It is a
// pure function of its arguments.
//
//   - A type reg does not know, or a ledger the default table does not know, fails closed: the
//     whole data object is encrypted.
//   - Otherwise the ledger's rule (and for event ledgers the type's category) decides; explicit
//     sensitive: true forces it, sensitive: false never lowers it.
//   - sensitive_paths are always encrypted, even when nothing else flags the entry.
//   - Every value a rule reads is compared exactly against known values, and only an explicit
//     allow-list leaves an entry unflagged: thread.mode "bot", user.type "user", "bot" or
//     absent. Any other spelling, an empty or an unknown value flags it. (Booleans —
//     sensitive, component.sensitive, trigger.sensitive — are typed by the decoder; an unknown
//     type or ledger name fails closed as above.)
//
// Paths are the registry fields of the type followed by sensitive_paths, deduplicated, with any
// path that lies under another one dropped, in that stable order. Paths absent from the entry are
// for the caller to skip. A nil reg means schemas.DefaultRegistry(). Rules do not depend on TTL
// overrides, so Decide reads the default ledger table.
func Decide(e *schemas.Entry, app AppSettings, reg *schemas.Registry) Decision {
	if reg == nil {
		reg = schemas.DefaultRegistry()
	}
	info, ok := reg.Lookup(e.Type)
	if !ok {
		return Decision{Sensitive: true, Paths: []string{"data"}, Reason: reasonUnknownType}
	}
	l, ok := Lookup(e.Ledger)
	if !ok {
		return Decision{Sensitive: true, Paths: []string{"data"}, Reason: reasonUnknownLedger}
	}
	flagged, reason := rule(e, app, l.Rule, info.Category)
	if e.Sensitive != nil && *e.Sensitive && !flagged {
		flagged, reason = true, reasonExplicit
	}
	switch {
	case flagged:
		paths := mergePaths(info.Fields, e.SensitivePaths)
		if len(e.SensitivePaths) > 0 {
			reason += pathsSuffix
		}
		return Decision{Sensitive: true, Paths: paths, Reason: reason}
	case len(e.SensitivePaths) > 0:
		return Decision{Sensitive: true, Paths: mergePaths(nil, e.SensitivePaths), Reason: reasonPathsOnly + " (" + reason + ")"}
	}
	return Decision{Reason: reason}
}

// rule applies the ledger rule and, on event ledgers, the category rule of DESIGN §3.
func rule(e *schemas.Entry, app AppSettings, r Rule, c schemas.Category) (bool, string) {
	if r == RuleTransport || (r == RuleEvent && c == schemas.CategoryTransport) {
		if app.Transport {
			return true, reasonTransportOn
		}
		return false, reasonTransportOff
	}
	if !app.Transcript {
		return false, reasonTranscriptOff
	}
	if r == RuleMedia || c == schemas.CategoryMedia {
		return true, reasonMedia
	}
	switch c {
	case schemas.CategoryOrdinary:
		switch {
		case e.User.Type == "agent" || e.User.Type == "system":
			return true, reasonStaffUser
		case e.Thread.Mode != botMode:
			// An empty or unknown mode is not bot mode: fail closed.
			return true, reasonNotBot
		case !slices.Contains(ordinaryUserTypes, e.User.Type):
			return true, reasonOddUser
		}
		return false, reasonBotMode
	case schemas.CategoryComponent:
		if e.Component == nil || e.Component.Sensitive == nil || *e.Component.Sensitive {
			return true, reasonComponentOn
		}
		return false, reasonComponentOff
	case schemas.CategoryTrigger:
		if e.Trigger != nil && e.Trigger.Sensitive {
			return true, reasonTriggerOn
		}
		return false, reasonTriggerOff
	}
	return true, reasonNoCategory
}

// mergePaths concatenates a and b, dropping duplicates and paths under an earlier or later one.
func mergePaths(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, list := range [][]string{a, b} {
	next:
		for _, p := range list {
			for i, q := range out {
				switch {
				case schemas.CoversString(q, p):
					continue next
				case schemas.CoversString(p, q):
					// p covers a path already listed: it takes that place, and later
					// duplicates under p are dropped when they come up.
					out[i] = p
					out = dropCovered(out, i)
					continue next
				}
			}
			out = append(out, p)
		}
	}
	return out
}

// dropCovered removes from out every element other than out[keep] that out[keep] covers.
func dropCovered(out []string, keep int) []string {
	p := out[keep]
	w := 0
	for i, q := range out {
		if i != keep && schemas.CoversString(p, q) {
			continue
		}
		out[w] = q
		w++
	}
	return out[:w]
}
