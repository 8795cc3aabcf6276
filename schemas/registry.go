package schemas

// Category decides which rule flags an entry type (DESIGN §3).
type Category uint8

const (
	CategoryOrdinary  Category = iota + 1 // event rule: thread mode / user type
	CategoryMedia                         // always, with transcript
	CategoryComponent                     // component.sensitive (default true), with transcript
	CategoryTrigger                       // the incoming event was flagged sensitive, with transcript
	CategoryTransport                     // app transport setting
)

// TypeInfo is one row of the registry.
type TypeInfo struct {
	Type     string
	Ledgers  []string // ledgers the type may be published to
	Category Category
	Fields   []string // sensitive field paths, e.g. "data.text"
}
