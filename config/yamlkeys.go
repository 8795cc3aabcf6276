package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkYAML walks a YAML document against Config's type and returns every unknown key and every
// value of the wrong kind, each named by its dotted key path and line ("kafka.brokrs: unknown
// key (line 3); did you mean kafka.brokers?"), joined; nil when the document fits. yaml.v3's own
// errors name Go types ("field brokrs not found in type config.Kafka"), which mean nothing to
// whoever wrote the file. Values are never quoted: they may be secrets.
func checkYAML(doc *yaml.Node) error {
	var errs []error
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // an empty value leaves the default
		}
		at := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s (line %d)", path, fmt.Sprintf(format, args...), n.Line))
		}
		switch {
		case t == durationType || (t.Kind() != reflect.Struct && t.Kind() != reflect.Map && t.Kind() != reflect.Slice && t.Kind() != reflect.Pointer):
			if n.Kind != yaml.ScalarNode || n.Decode(reflect.New(t).Interface()) != nil {
				at("want %s", kindName(t))
			}
		case t.Kind() == reflect.Pointer:
			walk(n, t.Elem(), path)
		case t.Kind() == reflect.Slice:
			if n.Kind != yaml.SequenceNode {
				at("want %s", kindName(t))
				return
			}
			for i, e := range n.Content {
				walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		case t.Kind() == reflect.Map:
			if n.Kind != yaml.MappingNode {
				at("want a mapping of names to settings")
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
			}
		case t.Kind() == reflect.Struct:
			if n.Kind != yaml.MappingNode {
				at("want a mapping (keys: %s)", strings.Join(fieldNames(t), ", "))
				return
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Value == "<<" {
					continue // a merge key: its mapping is checked where it is defined
				}
				f, ok := fieldByTag(t, k.Value)
				if !ok {
					errs = append(errs, unknownKey(path, k, t))
					continue
				}
				walk(n.Content[i+1], f.Type, join(path, k.Value))
			}
		}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil
		}
		doc = doc.Content[0]
	}
	walk(doc, reflect.TypeFor[Config](), "")
	return errors.Join(errs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && name != "" && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// unknownKey names an unknown key by its path, with the closest known key or the list of them.
func unknownKey(path string, k *yaml.Node, t reflect.Type) error {
	names := fieldNames(t)
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(k.Value), n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Errorf("%s: unknown key (line %d); did you mean %s?", join(path, k.Value), k.Line, join(path, best))
	}
	where := "at the top level"
	if path != "" {
		where = "under " + path
	}
	return fmt.Errorf("%s: unknown key (line %d); known keys %s: %s", join(path, k.Value), k.Line, where, strings.Join(names, ", "))
}

func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 90s, 5m or 1h"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice:
		return "a list (of " + strings.TrimPrefix(kindName(t.Elem()), "a ") + "s)"
	case t.Kind() == reflect.Pointer:
		return kindName(t.Elem())
	}
	return "a " + t.Kind().String()
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = slices.Min([]int{prev[j] + 1, cur[j-1] + 1, prev[j-1] + cost})
		}
		prev = cur
	}
	return prev[len(b)]
}
