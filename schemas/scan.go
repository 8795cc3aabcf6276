package schemas

import (
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Scanner reads an entry in one pass over its bytes and keeps what a transform needs to rewrite it
// without decoding data: the entry's own fields (Entry, with Data nil), data's JSON text, an index
// of the values inside data (their byte ranges and member names or array indexes, to find the
// values at paths) and the token-shaped strings inside data. It accepts exactly what Decode
// accepts, under the same limits; when it rejects an entry, the error is the one Decode returns
// for it (the rejection path runs Decode, so the reasons are Decode's, named in one place).
//
// A Scanner is reused from entry to entry and is not safe for concurrent use: keep one per worker
// (a sync.Pool). What it returns is valid until the next Scan, except the strings of Entry, which
// are the entry's own (one allocation per entry holds all of them).
type Scanner struct {
	// Entry is the last scanned entry without its data; Data is always nil.
	Entry Entry

	in       bytes.Buffer
	dec      jsontext.Decoder
	input    []byte
	maxDepth int
	deepest  int  // deepest nesting seen, the entry object being 1
	data     Span // data's text; Start -1 when absent, null or empty
	nodes    []Node
	tokens   []Span // token-shaped strings inside data (values, not names)
	tokName  bool   // a member name inside data is token-shaped
	names    []byte // unescaped member names of data that hold escapes
	text     []byte // unescaped strings of the entry's own fields
	strs     [numStrs]textRef
	paths    []textRef // sensitive_paths, in text (present and empty is as absent: Decode normalizes it so)
	sens     bool
	comp     Component
	compSens bool
	trig     Trigger
	unq      []byte // scratch for unquoting one string
}

// Node is one value inside data (data itself is node 0), in document order. Only values at most
// MaxPathSegments deep are indexed (no path reaches further).
type Node struct {
	Start, End int  // the value's bytes in the input
	Kind       Kind // '{', '[', '"', '0' (number), 't', 'f' or 'n'
	Escaped    bool // a string whose text holds an escape
	next       int32
	index      int32 // array index; -1 for an object member
	nameAt     int32 // member name: offset in the input, or in names when nameEsc
	nameLen    int32
	nameEsc    bool
}

// Kind is the first byte of a JSON value's kind as jsontext reports it.
type Kind = jsontext.Kind

type textRef struct{ off, n int32 }

const (
	strID = iota
	strApp
	strLedger
	strType
	strThreadID
	strThreadMode
	strUserID
	strUserType
	strComponentID
	strTriggerID
	numStrs
)

var errTrailing = &jsontext.SyntacticError{ByteOffset: -1, Err: errors.New("invalid data after top-level value")}

// atEOF checks that only whitespace follows the entry.
func atEOF(dec *jsontext.Decoder) error {
	switch _, err := dec.ReadToken(); err {
	case io.EOF:
		return nil
	case nil:
		return errTrailing
	default:
		return err
	}
}

// errScan stops a scan; the rejection is then named by Decode.
var errScan = errors.New("scan: rejected")

// Scan reads b. On success, Entry holds the entry's own fields, validated and normalized as Decode
// does. On failure the error is Decode's *DecodeError for b.
func (s *Scanner) Scan(b []byte, lim Limits) error {
	maxDepth, err := lim.admit(b)
	if err != nil {
		return err
	}
	s.reset(b, maxDepth)
	err = s.scan()
	s.in = bytes.Buffer{}
	s.dec.Reset(&s.in) // drop the reference to b
	if err == nil && s.deepest > maxDepth {
		err = errScan
	}
	if err == nil {
		s.fill()
		if verr := s.Entry.validate(); verr != nil {
			return verr
		}
		s.Entry.normalize()
		return nil
	}
	s.input = nil
	if _, derr := Decode(b, lim); derr != nil {
		return derr
	}
	// The scanner refused what Decode accepts: a bug in the scanner. Fail closed.
	return decodeErr(ReasonMalformedJSON, "", -1)
}

func (s *Scanner) reset(b []byte, maxDepth int) {
	s.Entry = Entry{}
	s.input, s.maxDepth, s.deepest = b, maxDepth, 1
	s.data = Span{-1, -1}
	s.nodes, s.tokens, s.tokName = s.nodes[:0], s.tokens[:0], false
	s.names, s.text, s.paths = s.names[:0], s.text[:0], s.paths[:0]
	s.strs = [numStrs]textRef{}
	s.sens, s.compSens = false, false
	s.comp, s.trig = Component{}, Trigger{}
	s.in = *bytes.NewBuffer(b)
	s.dec.Reset(&s.in, decodeOptions)
}

// fill sets Entry's strings from text, in one allocation.
func (s *Scanner) fill() {
	all := string(s.text)
	str := func(r textRef) string { return all[r.off : r.off+r.n] }
	e := &s.Entry
	e.ID, e.AppID, e.Ledger, e.Type = str(s.strs[strID]), str(s.strs[strApp]), str(s.strs[strLedger]), str(s.strs[strType])
	e.Thread = Thread{ID: str(s.strs[strThreadID]), Mode: str(s.strs[strThreadMode])}
	e.User = User{ID: str(s.strs[strUserID]), Type: str(s.strs[strUserType])}
	if e.Component != nil {
		e.Component.ID = str(s.strs[strComponentID])
	}
	if e.Trigger != nil {
		e.Trigger.EntryID = str(s.strs[strTriggerID])
	}
	if len(s.paths) > 0 {
		e.SensitivePaths = make([]string, len(s.paths))
		for i, r := range s.paths {
			e.SensitivePaths[i] = str(r)
		}
	}
}

func (s *Scanner) scan() error {
	dec := &s.dec
	if dec.PeekKind() != '{' {
		return errScan
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if !bytes.ContainsRune(name, '\\') {
			name = name[1 : len(name)-1]
		} else if name, err = s.unquote(name); err != nil {
			return err
		}
		switch string(name) {
		case "id":
			err = s.readString(strID)
		case "app_id":
			err = s.readString(strApp)
		case "ledger":
			err = s.readString(strLedger)
		case "type":
			err = s.readString(strType)
		case "ts":
			err = json.UnmarshalDecode(dec, &s.Entry.TS)
		case "thread":
			err = s.readPair("id", strThreadID, "mode", strThreadMode)
		case "user":
			err = s.readPair("id", strUserID, "type", strUserType)
		case "sensitive_paths":
			err = s.readPaths()
		case "sensitive":
			s.Entry.Sensitive, err = s.readBool(&s.sens)
		case "component":
			err = s.readComponent()
		case "trigger":
			err = s.readTrigger()
		case "data":
			err = s.readData()
		default:
			return errScan // unknown member
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	return atEOF(dec)
}

// unquote returns the text of the JSON string v in s.unq.
func (s *Scanner) unquote(v []byte) ([]byte, error) {
	var err error
	s.unq, err = jsontext.AppendUnquote(s.unq[:0], v)
	return s.unq, err
}

// appendText adds the text of the JSON string v (raw, with its quotes) to s.text.
func (s *Scanner) appendText(v []byte) (textRef, error) {
	off := len(s.text)
	if !bytes.ContainsRune(v, '\\') {
		s.text = append(s.text, v[1:len(v)-1]...)
	} else {
		var err error
		if s.text, err = jsontext.AppendUnquote(s.text, v); err != nil {
			return textRef{}, err
		}
	}
	return textRef{int32(off), int32(len(s.text) - off)}, nil
}

// readString reads a string or null (which leaves "") into the entry string i, as Unmarshal does
// for a string field.
func (s *Scanner) readString(i int) error {
	v, err := s.dec.ReadValue()
	if err != nil {
		return err
	}
	switch v.Kind() {
	case '"':
		s.strs[i], err = s.appendText(v)
		return err
	case 'n':
		s.strs[i] = textRef{}
		return nil
	}
	return errScan
}

// readPair reads an object of at most two string members (Thread, User); null leaves both empty.
func (s *Scanner) readPair(n1 string, i1 int, n2 string, i2 int) error {
	s.strs[i1], s.strs[i2] = textRef{}, textRef{}
	return s.readObject(func(name []byte) error {
		switch string(name) {
		case n1:
			return s.readString(i1)
		case n2:
			return s.readString(i2)
		}
		return errScan
	})
}

// readObject reads an object of the entry's own (null is no object), calling member for each
// member with the value unread.
func (s *Scanner) readObject(member func(name []byte) error) error {
	dec := &s.dec
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		return err
	case '{':
	default:
		return errScan
	}
	s.deepest = max(s.deepest, 2)
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if !bytes.ContainsRune(name, '\\') {
			name = name[1 : len(name)-1]
		} else if name, err = s.unquote(name); err != nil {
			return err
		}
		if err := member(name); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// readBool reads true, false or null (nil) into *b.
func (s *Scanner) readBool(b *bool) (*bool, error) {
	v, err := s.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	switch v.Kind() {
	case 't', 'f':
		*b = v.Kind() == 't'
		return b, nil
	case 'n':
		return nil, nil
	}
	return nil, errScan
}

func (s *Scanner) readPaths() error {
	dec := &s.dec
	switch dec.PeekKind() {
	case 'n':
		_, err := dec.ReadToken()
		s.paths = s.paths[:0]
		return err
	case '[':
	default:
		return errScan
	}
	s.deepest = max(s.deepest, 2)
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	s.paths = s.paths[:0]
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		var r textRef
		switch v.Kind() {
		case '"':
			if r, err = s.appendText(v); err != nil {
				return err
			}
		case 'n':
		default:
			return errScan
		}
		if len(s.paths) == MaxSensitivePaths {
			return errScan
		}
		s.paths = append(s.paths, r)
	}
	_, err := dec.ReadToken()
	return err
}

func (s *Scanner) readComponent() error {
	s.Entry.Component = nil
	if s.dec.PeekKind() == '{' {
		s.comp = Component{}
		s.Entry.Component = &s.comp
	}
	var err error
	s.comp.Sensitive, err = s.readRef("id", strComponentID, &s.compSens)
	return err
}

func (s *Scanner) readTrigger() error {
	s.Entry.Trigger = nil
	if s.dec.PeekKind() == '{' {
		s.trig = Trigger{}
		s.Entry.Trigger = &s.trig
	}
	_, err := s.readRef("entry_id", strTriggerID, &s.trig.Sensitive)
	return err
}

// readRef reads a Component or a Trigger (null is none): an object of at most the string member
// idName, into the entry string i, and "sensitive", read into *flag as readBool does (sens is
// flag, or nil when the member is absent or null).
func (s *Scanner) readRef(idName string, i int, flag *bool) (sens *bool, err error) {
	s.strs[i] = textRef{}
	err = s.readObject(func(name []byte) error {
		switch string(name) {
		case idName:
			return s.readString(i)
		case "sensitive":
			var err error
			sens, err = s.readBool(flag)
			return err
		}
		return errScan
	})
	return sens, err
}

// readData reads data with the decoder (which checks its grammar, UTF-8 and duplicate names, as
// Decode's parse does) and indexes the values of the text it returns. A member "data" present
// twice is a duplicate name, which the decoder refuses.
func (s *Scanner) readData() error {
	switch s.dec.PeekKind() {
	case 'n':
		_, err := s.dec.ReadToken()
		return err
	case '{':
	default:
		return errScan // Decode cannot put a non-object in data
	}
	v, err := s.dec.ReadValue()
	if err != nil {
		return err
	}
	end := int(s.dec.InputOffset())
	x := indexer{s: s, b: s.input[:end], i: end - len(v)}
	s.nodes = s.nodes[:0]
	if err := x.value(2, 0, -1, 0, 0, false); err != nil {
		return err
	}
	if s.nodes[0].next == 1 {
		return nil // {}: no data, as Decode normalizes it
	}
	s.data = Span{s.nodes[0].Start, s.nodes[0].End}
	return nil
}

// indexer walks JSON text the decoder has already checked, so it only follows the structure:
// strings, numbers, literals, brackets, and the whitespace between them.
type indexer struct {
	s *Scanner
	b []byte
	i int
}

func (x *indexer) ws() {
	for x.i < len(x.b) {
		switch x.b[x.i] {
		case ' ', '\t', '\n', '\r':
			x.i++
		default:
			return
		}
	}
}

// str skips the string at x.i and reports whether it holds an escape.
func (x *indexer) str() (esc bool) {
	i := x.i + 1
	for {
		j := bytes.IndexByte(x.b[i:], '"')
		if j < 0 {
			x.i = len(x.b) // cannot happen: the text was checked
			return esc
		}
		k := i + j
		n := 0
		for k-1-n >= i && x.b[k-1-n] == '\\' {
			n++
		}
		if !esc && bytes.IndexByte(x.b[i:k], '\\') >= 0 {
			esc = true
		}
		i = k + 1
		if n%2 == 0 {
			x.i = i
			return esc
		}
	}
}

// value indexes one value inside data at nesting depth (the entry object being 1) and level (the
// path segments below data), recording it when a path can reach it.
func (x *indexer) value(depth, level int, index int32, nameAt, nameLen int32, nameEsc bool) error {
	s := x.s
	x.ws()
	if x.i >= len(x.b) {
		return errScan
	}
	c := x.b[x.i]
	kind := Kind(c)
	switch {
	case c == '-' || '0' <= c && c <= '9':
		kind = '0'
	}
	indexed := level < MaxPathSegments
	at := len(s.nodes)
	if indexed {
		s.nodes = append(s.nodes, Node{Kind: kind, index: index, nameAt: nameAt, nameLen: nameLen, nameEsc: nameEsc})
	}
	start := x.i
	switch kind {
	case '{', '[':
		if depth > s.maxDepth {
			s.deepest = depth
			return errScan
		}
		s.deepest = max(s.deepest, depth)
		x.i++
		x.ws()
		closing := byte('}')
		if kind == '[' {
			closing = ']'
		}
		for k := int32(0); x.i < len(x.b) && x.b[x.i] != closing; k++ {
			if k > 0 {
				x.i++ // ','
			}
			var err error
			if kind == '{' {
				err = x.member(depth, level)
			} else {
				err = x.value(depth+1, level+1, k, 0, 0, false)
			}
			if err != nil {
				return err
			}
			x.ws()
		}
		x.i++
	case '"':
		esc := x.str()
		text := x.b[start+1 : x.i-1]
		if esc {
			var err error
			if text, err = s.unquote(x.b[start:x.i]); err != nil {
				return err
			}
		}
		if bytes.HasPrefix(text, tokenPrefix) {
			s.tokens = append(s.tokens, Span{start, x.i})
		}
		if indexed {
			s.nodes[at].Escaped = esc
		}
	case 't', 'n':
		x.i += 4
	case 'f':
		x.i += 5
	case '0':
		exp := false
	number:
		for x.i < len(x.b) {
			switch x.b[x.i] {
			case 'e', 'E':
				exp = true
			case '-', '+', '.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			default:
				break number
			}
			x.i++
		}
		// Decode holds numbers as float64 and refuses one out of its range.
		if exp || x.i-start > 300 {
			if _, err := strconv.ParseFloat(string(x.b[start:x.i]), 64); err != nil {
				return errScan
			}
		}
	default:
		return errScan // cannot happen: the text was checked
	}
	if indexed {
		n := &s.nodes[at]
		n.Start, n.End, n.next = start, x.i, int32(len(s.nodes))
	}
	return nil
}

// member indexes one member of an object at depth and level: its name, then its value.
func (x *indexer) member(depth, level int) error {
	s := x.s
	x.ws()
	start := x.i
	esc := x.str()
	nat, nlen := int32(start+1), int32(x.i-start-2)
	text := x.b[start+1 : x.i-1]
	if esc {
		off := len(s.names)
		var err error
		if s.names, err = jsontext.AppendUnquote(s.names, x.b[start:x.i]); err != nil {
			return err
		}
		nat, nlen = int32(off), int32(len(s.names)-off)
		text = s.names[off:]
	}
	if bytes.HasPrefix(text, tokenPrefix) {
		s.tokName = true
	}
	x.ws()
	x.i++ // ':'
	return x.value(depth+1, level+1, -1, nat, nlen, esc)
}

// Span is the byte range [Start, End) of one value inside data's JSON text; Start is -1 when the
// path is absent.
type Span struct{ Start, End int }

var tokenPrefix = []byte(TokenPrefix)

// Forget drops the scanner's reference to the last input, so a pooled scanner does not keep it
// alive.
func (s *Scanner) Forget() {
	s.input = nil
	clear(s.unq) // the last string unquoted may be a value of data
}

// Data returns data's JSON text (a slice of the scanned input), or nil when the entry has no data
// (absent, null or {}).
func (s *Scanner) Data() []byte {
	if s.data.Start < 0 {
		return nil
	}
	return s.input[s.data.Start:s.data.End]
}

// DataSpan is data's byte range in the input; Start is -1 when the entry has no data.
func (s *Scanner) DataSpan() Span { return s.data }

// Tokens returns the byte ranges of the token-shaped strings (TokenPrefix, after unescaping)
// among data's values, quotes included, in document order.
func (s *Scanner) Tokens() []Span { return s.tokens }

// TokenName reports whether a member name inside data is token-shaped.
func (s *Scanner) TokenName() bool { return s.tokName }

// Node returns node i of data's index (0 is data itself).
func (s *Scanner) Node(i int) Node { return s.nodes[i] }

// Members calls f with the index and name of each member of data, in document order, until f
// returns false. The name is valid until the next Scan.
func (s *Scanner) Members(f func(i int, name []byte) bool) {
	if s.data.Start < 0 {
		return
	}
	for i := 1; i < int(s.nodes[0].next); i = int(s.nodes[i].next) {
		if !f(i, s.name(&s.nodes[i])) {
			return
		}
	}
}

func (s *Scanner) name(n *Node) []byte {
	if n.nameEsc {
		return s.names[n.nameAt : n.nameAt+n.nameLen]
	}
	return s.input[n.nameAt : n.nameAt+n.nameLen]
}

// Find returns the index of the node at path (dotted, starting with "data"; "data" itself is
// node 0), as Entry.Get would find it: a numeric segment indexes an array, and names an object's
// member like any other name.
func (s *Scanner) Find(path string) (int, bool) {
	if s.data.Start < 0 {
		return 0, false
	}
	rest, ok := cutPrefix(path, "data")
	if !ok {
		return 0, false
	}
	cur := 0
	for rest != "" {
		if rest[0] != '.' {
			return 0, false
		}
		rest = rest[1:]
		seg := rest
		if i := indexByte(rest, '.'); i >= 0 {
			seg, rest = rest[:i], rest[i:]
		} else {
			rest = ""
		}
		n := &s.nodes[cur]
		want := int32(-1)
		switch n.Kind {
		case '[':
			i, ok := index(seg)
			if !ok {
				return 0, false
			}
			want = int32(i)
		case '{':
		default:
			return 0, false
		}
		found := -1
		for c := cur + 1; c < int(n.next); c = int(s.nodes[c].next) {
			child := &s.nodes[c]
			if (want >= 0 && child.index == want) || (want < 0 && string(s.name(child)) == seg) {
				found = c
				break
			}
		}
		if found < 0 {
			return 0, false
		}
		cur = found
	}
	return cur, true
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return s, false
	}
	return s[len(prefix):], true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
