package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestRunAsSygaldry: under the name sygaldry (the mount at
// /usr/local/bin/sygaldry, or a symlink) the binary is the user's command;
// under its own name it is the agent.
func TestRunAsSygaldry(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"/usr/local/bin/sygaldry", "ports", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("sygaldry ports --json: exit %d, %s", code, errb.String())
	}
	var ls []map[string]any
	if err := json.Unmarshal(out.Bytes(), &ls); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}

	out.Reset()
	if code := run([]string{"sygaldry", "help"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "usage: sygaldry ports") {
		t.Errorf("sygaldry help: exit %d, %q", code, out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"sygaldry-agent", "ports"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "ports"`) {
		t.Errorf("sygaldry-agent ports: exit %d, %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"/.sygaldry/bin/sygaldry-agent", "version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sygaldry-agent ") {
		t.Errorf("sygaldry-agent version: exit %d, %q", code, out.String())
	}
}
