package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is a configuration problem at a place in a file.
type Error struct {
	File string // the config file, "" when parsed from memory
	Line int    // 1-based; 0 when no single line is to blame
	Msg  string
}

func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Load reads, defaults and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a configuration document; name is used in error messages.
// All problems found are returned, joined, each naming file:line.
func Parse(name string, data []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().EnableUnmarshalerInterface()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(name, err)
	}
	c.Path = name
	c.fillDefaults()
	loc := newLocator(data)
	c.loc = loc
	if errs := c.validate(); len(errs) > 0 {
		out := make([]error, 0, len(errs))
		for _, ve := range errs {
			out = append(out, &Error{File: name, Line: loc.line(ve.path), Msg: ve.msg})
		}
		return nil, errors.Join(out...)
	}
	if err := c.loadRevoked(); err != nil {
		return nil, &Error{File: name, Line: loc.line("server.revoked_keys"), Msg: err.Error()}
	}
	c.indexOnce.Do(c.index)
	return &c, nil
}

// decodeError turns go-toml's errors into file:line errors, one per unknown key.
func decodeError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		out := make([]error, 0, len(strict.Errors))
		for i := range strict.Errors {
			de := &strict.Errors[i]
			line, _ := de.Position()
			out = append(out, &Error{File: name, Line: line, Msg: fmt.Sprintf("unknown key %q", strings.Join(de.Key(), "."))})
		}
		return errors.Join(out...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if k := de.Key(); len(k) > 0 {
			msg = fmt.Sprintf("%s: %s", strings.Join(k, "."), msg)
		}
		return &Error{File: name, Line: line, Msg: msg}
	}
	return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

// locator maps dotted key paths to the line that defines them, so validation
// errors found after decoding can still name file:line.
type locator struct {
	lines  map[string]int
	folded map[string]int // by lowercased path: go-toml matches struct keys case-insensitively ([Projects.x])
}

func newLocator(data []byte) *locator {
	l := &locator{lines: map[string]int{}, folded: map[string]int{}}
	var p unstable.Parser
	p.Reset(data)
	lineOf := func(sub []byte) int {
		// sub is a subslice of data: its offset is the difference in capacity.
		off := cap(data) - cap(sub)
		if off < 0 || off > len(data) {
			return 0
		}
		return 1 + bytes.Count(data[:off], []byte("\n"))
	}
	var table []string
	entries := map[string]int{} // array table path -> entries seen
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			line := 0
			for it := e.Key(); it.Next(); {
				n := it.Node()
				table = append(table, string(n.Data))
				if line == 0 {
					line = lineOf(n.Data)
				}
			}
			path := strings.Join(table, ".")
			l.set(path, line)
			// Each [[path]] entry is "path.N", as an inline array's
			// elements are, and its keys are under it: an error in the
			// second [[kubernetes.tolerations]] names that entry's line.
			if e.Kind == unstable.ArrayTable {
				n := entries[path]
				entries[path]++
				table = append(table, fmt.Sprint(n))
				l.set(strings.Join(table, "."), line)
			}
		case unstable.KeyValue:
			key := append([]string(nil), table...)
			line := 0
			for it := e.Key(); it.Next(); {
				n := it.Node()
				key = append(key, string(n.Data))
				if line == 0 {
					line = lineOf(n.Data)
				}
			}
			path := strings.Join(key, ".")
			l.set(path, line)
			// Array elements get "path.N", so an error in one entry of a
			// multi-line list (users.NAME.keys) names the entry's own line.
			if v := e.Value(); v != nil && v.Kind == unstable.Array {
				i := 0
				for it := v.Children(); it.Next(); i++ {
					if n := it.Node(); n.Raw.Length > 0 {
						l.set(fmt.Sprintf("%s.%d", path, i), 1+bytes.Count(data[:n.Raw.Offset], []byte("\n")))
					}
				}
			}
		}
	}
	return l
}

// set records the first line of path and of each of its parents, so that a
// table written only as dotted keys (server.max_auth_tries = -1) has a line.
func (l *locator) set(path string, line int) {
	if line <= 0 {
		return
	}
	for {
		if _, ok := l.lines[path]; !ok {
			l.lines[path] = line
		}
		if k := strings.ToLower(path); l.folded[k] == 0 {
			l.folded[k] = line
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return
		}
		path = path[:i]
	}
}

// line returns the line of path, or of its nearest defined parent.
func (l *locator) line(path string) int {
	for path != "" {
		if n, ok := l.lines[path]; ok {
			return n
		}
		if n, ok := l.folded[strings.ToLower(path)]; ok {
			return n
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}
