package usererr

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestMessage(t *testing.T) {
	cause := fmt.Errorf("dial unix /var/lib/x.sock: %w", fs.ErrNotExist)
	err := fmt.Errorf("ensure: %w", New("your container is starting\n", cause))
	if got := Message(err); got != "your container is starting" {
		t.Errorf("Message = %q", got)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("the cause is not reachable with errors.Is")
	}
	if got := err.Error(); got != "ensure: your container is starting\n: dial unix /var/lib/x.sock: file does not exist" {
		t.Errorf("Error = %q: the log text must keep the cause", got)
	}
	if got := Message(cause); got != "" {
		t.Errorf("Message of a plain error = %q, want none", got)
	}
	if got := Message(nil); got != "" {
		t.Errorf("Message(nil) = %q", got)
	}
	e := Errorf("project %q is no longer configured", "x")
	if Message(e) != e.Error() || Message(e) != `project "x" is no longer configured` {
		t.Errorf("Errorf: message %q, error %q", Message(e), e.Error())
	}
	// Found in a joined tree too.
	if got := Message(errors.Join(cause, e)); got != `project "x" is no longer configured` {
		t.Errorf("Message in a joined error = %q", got)
	}
}
