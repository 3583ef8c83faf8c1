package config

import (
	"strings"
	"testing"
)

func TestLogCommands(t *testing.T) {
	for doc, want := range map[string]bool{
		"[server]\n":                       true,
		"[server]\nlog_commands = true\n":  true,
		"[server]\nlog_commands = false\n": false,
	} {
		c, err := Parse("gw.toml", []byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if got := c.Server.CommandsLogged(); got != want {
			t.Errorf("%q: CommandsLogged() = %v, want %v", doc, got, want)
		}
	}
	_, err := Parse("gw.toml", []byte("[server]\nlisten = \"127.0.0.1:2222\"\nlog_commands = \"no\"\n"))
	if err == nil || !strings.Contains(err.Error(), "gw.toml:3") {
		t.Fatalf("a string for log_commands: %v, want an error naming gw.toml:3", err)
	}
}
