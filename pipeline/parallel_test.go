package pipeline

import (
	"errors"
	"testing"
)

func TestMapOrdered(t *testing.T) {
	for _, tt := range []struct {
		name       string
		n, workers int
	}{
		{"empty", 0, 4}, {"one", 1, 4}, {"sequential", 100, 1}, {"two workers", 101, 2}, {"more workers than items", 3, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MapOrdered(tt.n, tt.workers, func(i int) (int, error) { return i * i, nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.n {
				t.Fatalf("MapOrdered(%d) returned %d results", tt.n, len(got))
			}
			for i, v := range got {
				if v != i*i {
					t.Fatalf("MapOrdered result %d = %d, want %d", i, v, i*i)
				}
			}
		})
	}
	boom := errors.New("boom")
	for _, workers := range []int{1, 3} {
		if _, err := MapOrdered(50, workers, func(i int) (int, error) {
			if i == 37 {
				return 0, boom
			}
			return i, nil
		}); !errors.Is(err, boom) {
			t.Errorf("MapOrdered with %d workers and a failing item = %v, want boom", workers, err)
		}
	}
}
