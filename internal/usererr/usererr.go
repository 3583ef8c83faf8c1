// Package usererr is the one idea of "an error the user sees": any error in
// a chain that has a UserMessage method carries a short text fit for a
// user's terminal, while Error() keeps the complete cause for the log.
//
// The container manager's errors (workspace.Error), an admin's kill
// (sessions.KilledError) and the gateway's own refusals all implement it;
// the gateway finds the text with one errors.As, in Message, where text
// reaches the user. Causes stay unwrappable.
package usererr

import (
	"errors"
	"fmt"
	"strings"
)

// Error is an error with a text for the user.
type Error interface {
	error
	// UserMessage is one or a few short lines for the user's terminal: no
	// Go error strings, no paths of the host.
	UserMessage() string
}

// Message returns the user's text of the first error in err's tree that has
// one, without trailing newlines, or "" when none has.
func Message(err error) string {
	var e Error
	if errors.As(err, &e) {
		return strings.TrimRight(e.UserMessage(), "\n")
	}
	return ""
}

// New returns an error whose user's text is msg; cause (may be nil) is kept
// for the log and for errors.Is and errors.As.
func New(msg string, cause error) error { return &withCause{msg: msg, cause: cause} }

// Errorf returns an error whose user's text, and log text, is the formatted
// message.
func Errorf(format string, args ...any) error {
	return &withCause{msg: fmt.Sprintf(format, args...)}
}

type withCause struct {
	msg   string
	cause error
}

// Error is the complete cause, for the log.
func (e *withCause) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *withCause) UserMessage() string { return e.msg }
func (e *withCause) Unwrap() error       { return e.cause }
