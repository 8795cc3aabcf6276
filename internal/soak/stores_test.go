package soak

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/redis/go-redis/v9"

	"github.com/veil-project/veil/sinks/analytics"
)

// redisDump checks every key and value of the Redis store, whatever its type.
func (s *scan) redisDump(ctx context.Context, addr string) (keys int) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	it := c.Scan(ctx, 0, "*", 1000).Iterator()
	for it.Next(ctx) {
		k := it.Val()
		keys++
		var vals []string
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			vals = []string{c.Get(ctx, k).Val()}
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "set":
			vals = c.SMembers(ctx, k).Val()
		case "zset":
			vals = c.ZRange(ctx, k, 0, -1).Val()
		case "list":
			vals = c.LRange(ctx, k, 0, -1).Val()
		case "none": // expired between SCAN and TYPE
		default:
			s.t.Errorf("redis key %s has unexpected type %s", k, typ)
		}
		s.check("redis key "+k, []byte(k))
		s.places-- // key and value are one place
		s.check("redis value of "+k, []byte(strings.Join(vals, "\x00")))
	}
	if err := it.Err(); err != nil {
		s.t.Fatalf("scanning redis: %v", err)
	}
	return keys
}

// parquetRows reads every Parquet file under dir; files being written (temporary names) are
// skipped.
func parquetRows(t *testing.T, dir string) (rows []analytics.Row, files []string) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !info.Mode().IsRegular() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		rs, err := parquet.ReadFile[analytics.Row](path)
		if os.IsNotExist(err) {
			return nil // replaced by an overlapping batch meanwhile
		}
		if err != nil {
			return err
		}
		rows = append(rows, rs...)
		files = append(files, path)
		return nil
	})
	if err != nil {
		t.Fatalf("reading Parquet under %s: %v", dir, err)
	}
	return rows, files
}

// parquet checks the decoded rows of every Parquet file (the columns are compressed, so a scan
// of the file bytes alone would not see a leak).
func (s *scan) parquet(dir string) int {
	rows, files := parquetRows(s.t, dir)
	for _, r := range rows {
		s.check("Parquet row "+r.ID, []byte(r.ID+r.ThreadID+r.UserID+r.Data))
		s.places--
	}
	s.places += len(files)
	return len(rows)
}

// rowCounts counts Parquet rows per entry id.
func rowCounts(rows []analytics.Row) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		m[r.ID]++
	}
	return m
}

var tokenRE = regexp.MustCompile(`"(veil:v1:[A-Za-z0-9_\-.:=+/]+)"`)

// tokensOf returns the tokens in an encrypted entry.
func tokensOf(v []byte) []string {
	var out []string
	for _, m := range tokenRE.FindAllSubmatch(v, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// b64decode decodes a JSON string holding base64, or returns "".
func b64decode(v []byte) string {
	s := strings.Trim(string(v), `"`)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}
