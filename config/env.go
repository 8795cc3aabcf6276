package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable veil reads.
const EnvPrefix = "VEIL_"

// ConfigEnv names the variable holding the config file path when -config is not given. It is
// the one VEIL_ variable that is not a config key.
const ConfigEnv = "VEIL_CONFIG"

// ClientEnv lists the VEIL_ variables read by client commands (veil reveal), not config keys:
// loading the config ignores them, so a shell that holds them can still run the service.
var ClientEnv = []string{"VEIL_API_KEY", "VEIL_URL"}

// EnvName returns the environment variable of a dotted YAML key path: VEIL_ followed by the path
// upper-cased with dots replaced by underscores. EnvName("kafka.sasl.password") is
// "VEIL_KAFKA_SASL_PASSWORD". Map keys are part of the path: ledgers.event.ttl is
// VEIL_LEDGERS_EVENT_TTL; a map key can be set from the environment only if it consists of
// lower-case letters, digits and underscores.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Key is one configuration key: its dotted YAML path and its environment variable. Keys under a
// map have a placeholder segment in angle brackets ("apps.<app_id>.transcript").
type Key struct {
	Path string
	Env  string
}

// Keys lists every configuration key, in declaration order.
func Keys() []Key {
	var out []Key
	walk(reflect.TypeFor[Config](), "", func(path string, _ []int, mapField *reflect.StructField) {
		if mapField != nil {
			ph := "<" + placeholder(path) + ">"
			p := path + "." + ph + "." + mapField.Tag.Get("yaml")
			out = append(out, Key{Path: p, Env: EnvName(path) + "_" + strings.ToUpper(ph) + "_" + strings.ToUpper(mapField.Tag.Get("yaml"))})
			return
		}
		out = append(out, Key{Path: path, Env: EnvName(path)})
	})
	return out
}

func placeholder(mapPath string) string {
	switch mapPath {
	case "apps":
		return "app_id"
	case "ledgers":
		return "ledger"
	case "integrations":
		return "name"
	}
	return "key"
}

// walk calls fn for every leaf of t: with the field index path for struct leaves, or, for a map
// of structs at path, once per field of the value struct (mapField non-nil, index of the map).
func walk(t reflect.Type, prefix string, fn func(path string, index []int, mapField *reflect.StructField)) {
	var rec func(t reflect.Type, prefix string, index []int)
	rec = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			idx := append(slices.Clone(index), i)
			switch {
			case f.Type.Kind() == reflect.Struct:
				rec(f.Type, path, idx)
			case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
				vt := f.Type.Elem()
				for j := range vt.NumField() {
					vf := vt.Field(j)
					fn(path, idx, &vf)
				}
			default:
				fn(path, idx, nil)
			}
		}
	}
	rec(t, prefix, nil)
}

// target is where one environment variable lands.
type target struct {
	index   []int // field index path from Config
	mapKey  string
	mapElem int // field index within the map's value struct; -1 when not under a map
}

// lookupEnv resolves an environment variable name to its target.
func lookupEnv(name string) (target, bool) {
	var found target
	ok := false
	walk(reflect.TypeFor[Config](), "", func(path string, index []int, mapField *reflect.StructField) {
		if ok {
			return
		}
		if mapField == nil {
			if EnvName(path) == name {
				found, ok = target{index: index, mapElem: -1}, true
			}
			return
		}
		rest, has := strings.CutPrefix(name, EnvName(path)+"_")
		if !has {
			return
		}
		key, has := strings.CutSuffix(rest, "_"+strings.ToUpper(mapField.Tag.Get("yaml")))
		if !has || key == "" {
			return
		}
		found, ok = target{index: index, mapKey: strings.ToLower(key), mapElem: mapField.Index[0]}, true
	})
	return found, ok
}

// KnownEnv reports whether name is an environment variable veil reads.
func KnownEnv(name string) bool {
	if name == ConfigEnv || slices.Contains(ClientEnv, name) {
		return true
	}
	_, ok := lookupEnv(name)
	return ok
}

func (c *Config) applyEnv(env []string) error {
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == ConfigEnv || slices.Contains(ClientEnv, name) {
			continue
		}
		if err := c.setEnv(name, val); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) setEnv(name, val string) error {
	t, ok := lookupEnv(name)
	if !ok {
		best, bestD := "", 4
		for _, k := range Keys() {
			if d := editDistance(name, k.Env); d < bestD && !strings.Contains(k.Env, "<") {
				best, bestD = k.Env, d
			}
		}
		if best != "" {
			return fmt.Errorf("unknown variable %s; did you mean %s?", name, best)
		}
		return fmt.Errorf("unknown variable %s", name)
	}
	if err := c.set(t, val); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// set parses s into the key at t.
func (c *Config) set(t target, s string) error {
	v := reflect.ValueOf(c).Elem().FieldByIndex(t.index)
	if t.mapElem < 0 {
		return setValue(v, s)
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	elem := reflect.New(v.Type().Elem()).Elem()
	if cur := v.MapIndex(reflect.ValueOf(t.mapKey)); cur.IsValid() {
		elem.Set(cur)
	}
	if err := setValue(elem.Field(t.mapElem), s); err != nil {
		return err
	}
	v.SetMapIndex(reflect.ValueOf(t.mapKey), elem)
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// setValue parses s into v by v's type. Errors never quote s: it may be a secret.
func setValue(v reflect.Value, s string) error {
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("not a duration (like 90s or 1h)")
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("not a boolean (true or false)")
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.ValueOf(SplitList(s)))
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := setValue(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}
