package fuzz_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain bounds the fuzzer's minimization of each new input to 100 executions unless
// -fuzzminimizetime is given. Go minimizes every input that reaches new code before fuzzing on, at
// a cost quadratic in its length and up to a minute each by default, and counts none of those
// executions: a 3 s run (make test) spent itself minimizing its first find, with ~50 executions
// and nothing new. With the bound the same run makes ~16,000 executions and keeps ~65 new inputs
// (measured with go test -run '^$' -fuzz FuzzTransform -fuzztime 3s ./pipeline/fuzz/). Crashers are
// minimized less; rerun with -fuzzminimizetime=60s to shrink one.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", "100x"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
