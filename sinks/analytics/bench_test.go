package analytics

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkFlush measures writing one file of redacted rows to a local directory: Parquet
// encoding, zstd, fsync, rename and directory fsync.
func BenchmarkFlush(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			w, err := NewLocalDir(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			rows := make([]Row, n)
			ts := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			for i := range rows {
				rows[i] = Row{
					ID: fmt.Sprintf("e-%08d", i), AppID: "app-42", Ledger: "event", Type: "meya.text.event.say",
					TS: ts.Add(time.Duration(i) * time.Millisecond), ThreadID: fmt.Sprintf("t-%d", i%500), ThreadMode: "agent",
					UserID: fmt.Sprintf("u-%d", i%300), UserType: "user", Sensitive: i%2 == 0,
					Data: `{"lang":"en","text":"★★★★★"}`,
				}
			}
			name := keyOf("app-42", "event", ts).Dir() + "/" + fileName(0, 0, int64(n-1))
			ctx := context.Background()
			var size int64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				err := w.WriteFile(ctx, name, func(out io.Writer) error {
					cw := &countingWriter{w: out}
					err := writeParquet(cw, rows)
					size = cw.n
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(size), "file-bytes")
		})
	}
}
