package admin

import (
	"errors"
	"os"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	other := os.Geteuid() + 4242
	for _, tc := range []struct {
		p    peer
		want bool
	}{
		{peer{uid: 0, known: true}, true},
		{peer{uid: os.Geteuid(), known: true}, true},
		{peer{uid: other, known: true}, false},
		{peer{uid: -1}, true}, // no SO_PEERCRED on this platform: the mode decides
		{peer{uid: -1, err: errors.New("getsockopt failed")}, false},
	} {
		if got := tc.p.allowed(); got != tc.want {
			t.Errorf("%+v.allowed() = %v, want %v", tc.p, got, tc.want)
		}
	}
}
