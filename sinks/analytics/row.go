package analytics

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/veil-project/veil/schemas"
)

// Row is one redacted entry as a Parquet row; the struct tags are the file schema.
type Row struct {
	ID         string    `parquet:"id"`
	AppID      string    `parquet:"app_id,dict"`
	Ledger     string    `parquet:"ledger,dict"`
	Type       string    `parquet:"type,dict"`
	TS         time.Time `parquet:"ts,timestamp(microsecond:utc)"`
	ThreadID   string    `parquet:"thread_id"`
	ThreadMode string    `parquet:"thread_mode,dict"`
	UserID     string    `parquet:"user_id"`
	UserType   string    `parquet:"user_type,dict"`
	Sensitive  bool      `parquet:"sensitive"`
	// Data is the redacted data object as JSON ("{}" when the entry has none).
	Data string `parquet:"data,json"`
}

// errTokenInRow is returned by rowOf when an entry still holds a token; the sink refuses the row.
var errTokenInRow = errors.New("row holds a token")

// dataOptions sort map keys so that a re-delivered entry produces the same bytes.
var dataOptions = json.Deterministic(true)

// rowOf converts a decoded redacted entry into a row. It fails with errTokenInRow, naming the
// field only, when any value under data (or an envelope string) starts with schemas.TokenPrefix.
func rowOf(e *schemas.Entry) (Row, error) {
	if field, ok := schemas.ScanTokens(e, func(string) bool { return false }); !ok {
		return Row{}, fmt.Errorf("%w in %s", errTokenInRow, field)
	}
	for _, f := range []struct{ name, val string }{
		{"id", e.ID}, {"thread.id", e.Thread.ID}, {"user.id", e.User.ID},
	} {
		if schemas.IsToken(f.val) {
			return Row{}, fmt.Errorf("%w in %s", errTokenInRow, f.name)
		}
	}
	data := "{}"
	if e.Data != nil {
		b, err := json.Marshal(e.Data, dataOptions)
		if err != nil {
			return Row{}, errors.New("encoding data: unencodable value")
		}
		data = string(b)
	}
	return Row{
		ID:         e.ID,
		AppID:      e.AppID,
		Ledger:     e.Ledger,
		Type:       e.Type,
		TS:         e.TS.UTC(),
		ThreadID:   e.Thread.ID,
		ThreadMode: e.Thread.Mode,
		UserID:     e.User.ID,
		UserType:   e.User.Type,
		Sensitive:  e.Sensitive != nil && *e.Sensitive,
		Data:       data,
	}, nil
}

// fileKey is the Hive partition of a row: app, ledger and the UTC hour of its event time.
type fileKey struct {
	app    string
	ledger string
	hour   time.Time // truncated to the hour, UTC
}

func keyOf(app, ledger string, ts time.Time) fileKey {
	return fileKey{app: app, ledger: ledger, hour: ts.UTC().Truncate(time.Hour)}
}

// Dir is the slash-separated partition directory: app=A/ledger=L/date=YYYY-MM-DD/hour=HH.
func (k fileKey) Dir() string {
	return "app=" + k.app + "/ledger=" + k.ledger + "/date=" + k.hour.Format("2006-01-02") +
		"/hour=" + k.hour.Format("15")
}

// fileName names the file of one source partition's rows from offset first to last (inclusive).
func fileName(partition int32, first, last int64) string {
	return "p" + strconv.FormatInt(int64(partition), 10) + "-o" + strconv.FormatInt(first, 10) +
		"-o" + strconv.FormatInt(last, 10) + ".parquet"
}

// parseFileName is the inverse of fileName; it reports false for any other name.
func parseFileName(name string) (partition int32, first, last int64, ok bool) {
	s, found := strings.CutSuffix(path.Base(name), ".parquet")
	if !found || !strings.HasPrefix(s, "p") {
		return 0, 0, 0, false
	}
	parts := strings.Split(s[1:], "-o")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	p, err1 := strconv.ParseInt(parts[0], 10, 32)
	f, err2 := strconv.ParseInt(parts[1], 10, 64)
	l, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || p < 0 || f < 0 || l < f {
		return 0, 0, 0, false
	}
	if fileName(int32(p), f, l) != path.Base(name) { // canonical form only (no "+1", "01")
		return 0, 0, 0, false
	}
	return int32(p), f, l, true
}
