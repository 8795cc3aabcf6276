package config

import (
	"flag"
	"fmt"
	"slices"
	"strings"
)

// BindFlags registers the common flags on fs: -config (the YAML file; default $VEIL_CONFIG),
// -data-dir, -brokers (comma-separated), -log-level, -listen-api and -listen-metrics. Parsing fs
// records them on c rather than setting them: c.File() is the -config value, and ApplyFlags
// copies the others onto a loaded Config, so flags override the file and the environment.
// Parse does all of this, including the $VEIL_CONFIG fallback. With only, BindFlags registers
// -config and just the named flags (a command lists the flags it uses).
func (c *Config) BindFlags(fs *flag.FlagSet, only ...string) {
	fs.Func("config", "path of the YAML config `file` (default $"+ConfigEnv+"; none: defaults)", func(s string) error {
		c.flagFile = s
		return nil
	})
	set := func(name, key, usage string) {
		if len(only) > 0 && !slices.Contains(only, name) {
			return
		}
		fs.Func(name, usage+" (config key "+key+")", func(s string) error {
			t, ok := lookupEnv(EnvName(key))
			if !ok {
				return fmt.Errorf("no config key %s", key)
			}
			c.flagSets = append(c.flagSets, func(dst *Config) error {
				return dst.set(t, s)
			})
			return nil
		})
	}
	set("data-dir", "data_dir", "data `directory`")
	set("brokers", "kafka.brokers", "comma-separated Kafka `brokers`; none: embedded broker")
	set("log-level", "log.level", "log `level`: debug, info, warn, error")
	set("listen-api", "listen.api", "reveal API `address`")
	set("listen-metrics", "listen.metrics", "metrics and health `address`")
}

// File returns the config file named by -config (or $VEIL_CONFIG) after the flags are parsed.
func (c *Config) File() string { return c.flagFile }

// ApplyFlags sets on dst the flags recorded on c by BindFlags, in command-line order.
func (c *Config) ApplyFlags(dst *Config) error {
	for _, f := range c.flagSets {
		if err := f(dst); err != nil {
			return err
		}
	}
	return nil
}

// Parse binds the common flags on fs, parses args, loads the file and env, applies the flags and
// validates: the whole precedence chain (defaults < file < env < flags) in one call.
func Parse(fs *flag.FlagSet, args, env []string) (*Config, error) {
	var flags Config
	flags.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	file := flags.flagFile
	if file == "" {
		file = lookup(env, ConfigEnv)
	}
	c, err := Load(file, env)
	if err != nil {
		return nil, err
	}
	if err := flags.ApplyFlags(c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func lookup(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}
