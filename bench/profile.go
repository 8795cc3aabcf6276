package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

type profileFiles struct{ cpu, mem string }

// profiles names the profiles of the pipeline phase; empty names mean none.
var profiles profileFiles

// startProfiles starts the CPU profile and the allocation sampling of one phase; the returned
// function stops them and writes the files.
func startProfiles(p profileFiles) (func() error, error) {
	var cpuFile *os.File
	if p.cpu != "" {
		f, err := os.Create(p.cpu)
		if err != nil {
			return nil, fmt.Errorf("creating CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("starting CPU profile: %w", err)
		}
		cpuFile = f
	}
	if p.mem != "" {
		runtime.MemProfileRate = 64 << 10
	}
	return func() error {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			if err := cpuFile.Close(); err != nil {
				return fmt.Errorf("writing CPU profile: %w", err)
			}
		}
		if p.mem != "" {
			f, err := os.Create(p.mem)
			if err != nil {
				return fmt.Errorf("creating allocation profile: %w", err)
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				return fmt.Errorf("writing allocation profile: %w", err)
			}
		}
		return nil
	}, nil
}
