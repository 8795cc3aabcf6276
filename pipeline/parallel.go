package pipeline

import "sync"

// MapOrdered calls f for every index in [0, n) on up to workers goroutines, each taking one
// contiguous chunk, and returns the results in index order, so records keep their order (and a
// partition's order) whatever the parallelism. The first error is returned; the chunk that met
// it stops, the others finish theirs.
func MapOrdered[T any](n, workers int, f func(i int) (T, error)) ([]T, error) {
	out := make([]T, n)
	if workers <= 1 || n <= 1 {
		for i := range n {
			v, err := f(i)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				v, err := f(i)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				out[i] = v
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return out, nil
}
