package workspace

import (
	"context"
	"time"

	"github.com/docker/docker/api/types/filters"

	"github.com/sygaldry/sygaldry/config"
)

// SpecStatus tells whether a container matches its project's current
// configuration.
type SpecStatus string

const (
	SpecCurrent SpecStatus = "current" // same spec hash as the configuration gives now
	SpecChanged SpecStatus = "changed" // recreated at the next Ensure when nobody is inside
	SpecUnknown SpecStatus = "unknown" // no Options.Projects, or the image cannot be inspected
)

// Info describes a managed container, for the admin tools.
type Info struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Project string     `json:"project"`
	User    string     `json:"user"`
	Image   string     `json:"image"`
	State   string     `json:"state"` // Docker's: created, running, exited, ...
	Created time.Time  `json:"created"`
	Spec    SpecStatus `json:"spec"`
	InUse   int        `json:"in_use"` // connections holding it (Acquire)
}

// List returns every managed container on the engine.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	all, err := m.list(ctx, filters.NewArgs())
	if err != nil {
		return nil, err
	}
	imageIDs := map[string]string{} // image ref -> ID ("" when unknown), per call
	out := make([]Info, 0, len(all))
	for _, f := range all {
		in := Info{
			ID: f.id, Name: f.name, Project: f.project, User: f.user,
			Image: f.image, State: f.state, Created: time.Unix(f.created, 0),
			Spec: SpecUnknown, InUse: m.InUse(f.name),
		}
		if m.opts.Projects != nil {
			in.Spec = m.specStatus(ctx, f, imageIDs)
		}
		out = append(out, in)
	}
	return out, nil
}

func (m *Manager) specStatus(ctx context.Context, f found, imageIDs map[string]string) SpecStatus {
	p, ok := m.opts.Projects(f.project)
	if !ok {
		return SpecChanged // the project is gone from the configuration
	}
	image := or(p.Image, config.DefaultImage)
	id, seen := imageIDs[image]
	if !seen {
		id, _ = m.imageID(ctx, image)
		imageIDs[image] = id
	}
	if id == "" {
		return SpecUnknown
	}
	spec, err := m.spec(ctx, p, f.user, id)
	if err != nil {
		return SpecChanged
	}
	if spec.Hash == f.hash {
		return SpecCurrent
	}
	return SpecChanged
}
