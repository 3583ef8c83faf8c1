package admin

import (
	"fmt"

	"github.com/sygaldry/sygaldry/sessions"
)

// FromRegistry adapts the gateway's session registry to Sessions. Its
// History reads the registry's history file, or wraps ErrNoHistory when the
// registry keeps none.
func FromRegistry(r *sessions.Registry) Sessions { return registrySessions{r} }

type registrySessions struct{ *sessions.Registry }

func (r registrySessions) History(n int) ([]sessions.Info, error) {
	h := r.Registry.History()
	if h == nil {
		return nil, fmt.Errorf("session history: %w", ErrNoHistory)
	}
	return h.Read(n)
}
