package testkit

import "iter"

// JSONValues yields v, a value encoding/json decoded into any, and then every value nested in it
// (object members and array elements, depth first).
func JSONValues(v any) iter.Seq[any] {
	return func(yield func(any) bool) { walkJSON(v, yield) }
}

func walkJSON(v any, yield func(any) bool) bool {
	if !yield(v) {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if !walkJSON(e, yield) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !walkJSON(e, yield) {
				return false
			}
		}
	}
	return true
}
