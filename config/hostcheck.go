package config

import "fmt"

// ErrorAt is a problem found after loading, with the value at the dotted key
// path (e.g. "projects.zephyr.gpus"): it names file:line like the problems
// Parse finds (the nearest table's line when the key is not in the file).
// The gateway uses it for checks against the host, such as a gpus value
// the host's GPUs cannot satisfy.
func (c *Config) ErrorAt(path, format string, args ...any) error {
	line := 0
	if c.loc != nil {
		line = c.loc.line(path)
	}
	return &Error{File: c.Path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// GPUsKey is the key path that sets project name's gpus: its own table's
// when it sets one, else [defaults]'.
func (c *Config) GPUsKey(name string) string {
	if p := c.Projects[name]; p != nil && p.GPUs.Set {
		return "projects." + name + ".gpus"
	}
	return "defaults.gpus"
}
