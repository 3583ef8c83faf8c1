package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Change is one key whose value differs between the configuration in force
// and a file read again.
type Change struct {
	Key     string // e.g. "server.idle_stop", "projects.zephyr.gpus", "users.alice" (added or removed)
	Running string // the value in force ("" for a table the file adds)
	File    string // the value in the file ("" for a table the file removes)
	Restart bool   // read once at start: in force only after a restart
}

// restartKeys are the keys read once when the gateway starts: the
// listeners, the directories and sockets, the engine and what the
// container manager took from them (RestartKeys). Every other key is read
// where it is used, from the configuration in force, so a reload applies it
// to what happens next: new connections, channels and requests, container
// creations and recreations, and (through the manager's reload) the limits,
// GPU cap and idle timers of the running containers.
//
// This table is the one place that decides it; Reload keeps a restart key's
// running value in force, so what the gateway reports and what it does
// agree.
var restartKeys = []struct {
	key string
	ptr func(*Config) any // the field, as a pointer
}{
	{"server.listen", func(c *Config) any { return &c.Server.Listen }},
	{"server.state_dir", func(c *Config) any { return &c.Server.StateDir }},
	{"server.admin_socket", func(c *Config) any { return &c.Server.AdminSocket }},
	{"server.metrics_listen", func(c *Config) any { return &c.Server.MetricsListen }},
	{"server.agent_path", func(c *Config) any { return &c.Server.AgentPath }},
	{"docker.host", func(c *Config) any { return &c.Docker.Host }},
	{"docker.storage_root", func(c *Config) any { return &c.Docker.StorageRoot }},
	{"docker.network_pool", func(c *Config) any { return &c.Docker.NetworkPool }},
	// The Kubernetes backend's client, namespace and link are made once;
	// the rest of [kubernetes] applies to pods made after a reload.
	{"server.backend", func(c *Config) any { return &c.Server.Backend }},
	{"kubernetes.kubeconfig", func(c *Config) any { return &c.Kubernetes.Kubeconfig }},
	{"kubernetes.namespace", func(c *Config) any { return &c.Kubernetes.Namespace }},
	{"kubernetes.link", func(c *Config) any { return &c.Kubernetes.Link }},
}

// RestartKeys lists the keys a reload cannot apply: a change to one is in
// force only after a restart.
func RestartKeys() []string {
	out := make([]string, len(restartKeys))
	for i, k := range restartKeys {
		out[i] = k.key
	}
	return out
}

// KeepRestartKeys copies the restart keys' values from running into next,
// so next is what is really in force after a reload.
func KeepRestartKeys(next, running *Config) {
	for _, k := range restartKeys {
		reflect.ValueOf(k.ptr(next)).Elem().Set(reflect.ValueOf(k.ptr(running)).Elem())
	}
}

// Diff lists the keys whose values differ between running and next, sorted
// by key. A project or user table added or removed is one change named by
// the table; within tables present in both, each key is its own change.
func Diff(running, next *Config) []Change {
	var out []Change
	diffValue(&out, "", reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem())
	restart := RestartKeys()
	for i := range out {
		out[i].Restart = slices.Contains(restart, out[i].Key)
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	return out
}

var (
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	marshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// diffValue appends the changes between a and b, two values of one type at
// key path.
func diffValue(out *[]Change, path string, a, b reflect.Value) {
	t := a.Type()
	switch {
	case t.Implements(stringerType) || t.Implements(marshalerType):
		if sa, sb := leafText(a), leafText(b); sa != sb {
			*out = append(*out, Change{Key: path, Running: sa, File: sb})
		}
	case t.Kind() == reflect.Pointer:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil() || b.IsNil():
			*out = append(*out, Change{Key: path, Running: leafText(a), File: leafText(b)})
		default:
			diffValue(out, path, a.Elem(), b.Elem())
		}
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Anonymous { // Project's embedded Settings: its keys are the project's
				diffValue(out, path, a.Field(i), b.Field(i))
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			diffValue(out, join(path, name), a.Field(i), b.Field(i))
		}
	case t.Kind() == reflect.Map:
		keys := map[string]bool{}
		for _, k := range a.MapKeys() {
			keys[k.String()] = true
		}
		for _, k := range b.MapKeys() {
			keys[k.String()] = true
		}
		for k := range keys {
			kv := reflect.ValueOf(k).Convert(t.Key())
			va, vb := a.MapIndex(kv), b.MapIndex(kv)
			switch {
			case !va.IsValid():
				*out = append(*out, Change{Key: join(path, k), File: "added"})
			case !vb.IsValid():
				*out = append(*out, Change{Key: join(path, k), Running: "present", File: "removed"})
			default:
				diffValue(out, join(path, k), va, vb)
			}
		}
	default: // scalars and lists: compared whole
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, Change{Key: path, Running: leafText(a), File: leafText(b)})
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// maxValueText bounds a value in a report: keys lists and env maps can be
// long, and a report is read in a terminal.
const maxValueText = 80

// leafText is a value as a report shows it.
func leafText(v reflect.Value) string {
	var s string
	switch {
	case v.Kind() == reflect.Pointer && v.IsNil():
		return "unset"
	case v.Type().Implements(marshalerType):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			s = err.Error()
		} else {
			s = string(b)
		}
	case v.Type().Implements(stringerType):
		s = v.Interface().(fmt.Stringer).String()
	case v.Kind() == reflect.Pointer:
		return leafText(v.Elem())
	default:
		s = fmt.Sprintf("%v", v.Interface())
	}
	if len(s) > maxValueText {
		s = s[:maxValueText-3] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
