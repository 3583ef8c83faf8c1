package workspace

import (
	"errors"
	"fmt"
)

// Sentinels callers may branch on (errors.Is).
var (
	ErrImageMissing   = errors.New("image missing")               // and no Dockerfile to build it
	ErrBuildFailed    = errors.New("image build failed")          // the Dockerfile did not build
	ErrNoGPURuntime   = errors.New("no NVIDIA container runtime") // GPUs configured, engine cannot attach them
	ErrUserMissing    = errors.New("container user missing")      // the image has no such user
	ErrUlimit         = errors.New("ulimits not permitted")       // the engine may not set the rlimits (memlock)
	ErrDriverTooOld   = errors.New("NVIDIA driver too old")       // the host driver is older than the image's CUDA needs
	ErrContainerExit  = errors.New("container exited")            // it stopped before its agent was ready
	ErrAgentNotReady  = errors.New("agent not ready")             // the agent socket did not answer in time
	ErrAgentUntrusted = errors.New("agent not verified")          // the agent socket or its peer failed verification
	ErrAgentMissing   = errors.New("agent binary missing")        // no sygaldry-agent on the host
	ErrNotManaged     = errors.New("container not managed")       // a container of our name lacks our labels
	ErrManagerClosed  = errors.New("container manager closed")
	errReadyTimedOut  = errors.New("timed out waiting for the agent")
	errExitedDuringUp = errors.New("container exited while starting")
)

// Error is a failure with a short message meant for the user's terminal
// (Msg) and the complete cause for the log (Err).
type Error struct {
	Msg  string // one or a few short lines, no Go error strings
	Kind error  // one of the sentinels above, or nil
	Err  error  // the cause, for the log
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

// Unwrap gives both the sentinel and the cause to errors.Is / errors.As.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

func userErr(kind, cause error, format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...), Kind: kind, Err: cause}
}

// UserMessage is the short message for the user's terminal (usererr.Error);
// the details belong in the gateway's log.
func (e *Error) UserMessage() string { return e.Msg }
