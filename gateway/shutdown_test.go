package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
)

// A session still open when Shutdown's drain time is up is ended with one
// line that says why, on both data paths; Shutdown returns once the
// channels have ended, not after a fixed pause.
func TestShutdownTellsOpenSessions(t *testing.T) {
	sshtest.Require(t, "ssh")
	bothPaths(t, func(t *testing.T, w *inproc) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := w.client.SSH(ctx, "echo up; exec sleep 30")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &testenv.SyncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "up\n" {
			t.Fatalf("session start: %q %v (%s)", line, err, stderr.String())
		}
		sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer scancel()
		if err := w.gw.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a session open = %v, want the drain deadline", err)
		}
		cmd.Wait()
		if !strings.Contains(stderr.String(), "sygaldry: the gateway is restarting") {
			t.Errorf("the user was not told why the session ended: %q", stderr.String())
		}
	})
}
