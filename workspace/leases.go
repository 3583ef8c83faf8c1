package workspace

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sygaldry/sygaldry/config"
)

// GPU leases (issue 7). A container leases the GPUs it gets when it is
// created or started and gives them back when it stops, is stopped when idle
// or is removed. The lease is recorded on the container (LabelGPUs,
// LabelGPUMode), so a restarted gateway rebuilds its table from the running
// containers. The table is pure logic: the manager feeds it the inventory
// and calls it under the container's lock; the table's own lock makes every
// grant atomic, so two first logins never get the same exclusive GPU.

// Lease labels: the UUIDs a container was given, comma-separated, and the
// mode they were leased in. Set at create; not part of the spec hash (a
// lease is not configuration).
const (
	LabelGPUs    = "sygaldry.gpus"
	LabelGPUMode = "sygaldry.gpu-mode"
)

// GPU is one of the host's GPUs as the lease table sees it.
type GPU struct {
	UUID        string
	Index       int
	Healthy     bool
	Utilization uint32 // percent; 0 when unknown
	MemoryUsed  uint64 // bytes; 0 when unknown
}

// GPUInventory tells the manager the host's GPUs now. A host without NVIDIA
// GPUs answers an error that is ErrNoHostGPUs (errors.Is).
type GPUInventory interface {
	GPUs() ([]GPU, error)
}

// Sentinels of a refused lease.
var (
	ErrNoHostGPUs = errors.New("no NVIDIA GPUs on this host") // the inventory has none
	ErrGPUsBusy   = errors.New("GPUs not free")               // held by others, unhealthy, missing, or over the user's cap
)

// Lease is the GPUs one container holds.
type Lease struct {
	Container string // sygaldry-<project>-<user>
	User      string
	Project   string
	UUIDs     []string
	Mode      string // config.GPUExclusive or config.GPUShared

	seq uint64 // when it was granted or restored (LeaseTable.seq)
}

// LeaseRequest asks for a container's GPUs as its project configures them.
type LeaseRequest struct {
	Container string
	User      string
	Project   string
	GPUs      config.GPUs // a count, "all" or a list; none asks for nothing
	Mode      string      // empty: exclusive
}

// LeaseTable is the GPUs leased to live containers. Safe for concurrent use.
type LeaseTable struct {
	mu     sync.Mutex
	leases map[string]Lease // by container name
	max    int              // max_gpus_per_user; 0: no cap
	seq    uint64           // bumped by every grant and restore
	// idle describes a holder for a refusal ("idle 3h", "in use"); nil:
	// nothing said.
	idle func(container string) string
}

// NewLeaseTable returns an empty table. maxPerUser caps the GPUs one user's
// containers hold together (0: no cap); idle describes a holder in a
// refusal line.
func NewLeaseTable(maxPerUser int, idle func(container string) string) *LeaseTable {
	return &LeaseTable{leases: map[string]Lease{}, max: maxPerUser, idle: idle}
}

// SetMaxPerUser changes the per-user cap (a reload); leases already granted
// stay.
func (t *LeaseTable) SetMaxPerUser(n int) {
	t.mu.Lock()
	t.max = n
	t.mu.Unlock()
}

// Grant leases req's GPUs from gpus (the inventory now) and records the
// lease, replacing any lease req.Container held. A refusal is an *Error of
// kind ErrGPUsBusy whose message is one line naming the holders.
func (t *LeaseTable) Grant(req LeaseRequest, gpus []GPU) (Lease, error) {
	mode := req.Mode
	if mode == "" {
		mode = config.GPUExclusive
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	// holders[uuid] are the other containers' leases on that GPU; the
	// container's own lease is being replaced and never conflicts.
	holders := map[string][]Lease{}
	userHeld := 0
	for _, l := range t.leases {
		if l.Container == req.Container {
			continue
		}
		for _, u := range l.UUIDs {
			holders[u] = append(holders[u], l)
		}
		if l.User == req.User {
			userHeld += len(l.UUIDs)
		}
	}
	free := func(uuid string) bool {
		for _, l := range holders[uuid] {
			if mode == config.GPUExclusive || l.Mode != config.GPUShared {
				return false
			}
		}
		return true
	}
	healthy := slices.DeleteFunc(slices.Clone(gpus), func(g GPU) bool { return !g.Healthy || g.UUID == "" })
	refuse := func(format string, args ...any) (Lease, error) {
		return Lease{}, userErr(ErrGPUsBusy, nil, format, args...)
	}

	var picked []string
	g := req.GPUs
	switch {
	case g.None():
		return Lease{}, nil
	case g.All || g.Count > 0:
		n := g.Count
		if g.All {
			n = len(healthy)
			if n == 0 {
				return refuse("project %s asks for all GPUs but none of this host's %d is healthy", req.Project, len(gpus))
			}
		}
		var cand []GPU
		for _, d := range healthy {
			if free(d.UUID) {
				cand = append(cand, d)
			}
		}
		if len(cand) < n {
			return refuse("%s; project %s needs %s", t.busyLine(gpus, healthy, free), req.Project, need(g, n))
		}
		// Least loaded first: fewest holders (shared), utilisation, memory
		// used; the index keeps the choice stable.
		slices.SortFunc(cand, func(a, b GPU) int {
			return cmp.Or(
				cmp.Compare(len(holders[a.UUID]), len(holders[b.UUID])),
				cmp.Compare(a.Utilization, b.Utilization),
				cmp.Compare(a.MemoryUsed, b.MemoryUsed),
				cmp.Compare(a.Index, b.Index))
		})
		for _, d := range cand[:n] {
			picked = append(picked, d.UUID)
		}
	default:
		for _, want := range listed(g) {
			i := slices.IndexFunc(gpus, func(d GPU) bool { return d.UUID == want || strconv.Itoa(d.Index) == want })
			if i < 0 {
				return refuse("project %s asks for GPU %s, which this host does not have", req.Project, want)
			}
			d := gpus[i]
			if !d.Healthy {
				return refuse("project %s asks for GPU %d (%s), which is unhealthy", req.Project, d.Index, d.UUID)
			}
			if !free(d.UUID) {
				return refuse("GPU %d (%s) is leased: %s; project %s needs it", d.Index, d.UUID, t.describe(holders[d.UUID]), req.Project)
			}
			if !slices.Contains(picked, d.UUID) {
				picked = append(picked, d.UUID)
			}
		}
	}
	if t.max > 0 && userHeld+len(picked) > t.max {
		return refuse("user %s may hold %d GPUs at once (max_gpus_per_user) and holds %d; project %s needs %d more", req.User, t.max, userHeld, req.Project, len(picked))
	}
	t.seq++
	l := Lease{Container: req.Container, User: req.User, Project: req.Project, UUIDs: picked, Mode: mode, seq: t.seq}
	t.leases[req.Container] = l
	return cloneLease(l), nil
}

// listed is a list request's entries: indices as decimal strings, then UUIDs.
func listed(g config.GPUs) []string {
	var out []string
	for _, i := range g.Indices {
		out = append(out, strconv.Itoa(i))
	}
	return append(out, g.IDs...)
}

func need(g config.GPUs, n int) string {
	if g.All {
		return fmt.Sprintf("all %d", n)
	}
	return strconv.Itoa(n)
}

// busyLine says how many of the healthy GPUs the request cannot have and
// who holds them: "2 of 2 GPUs are leased: sygaldry-zephyr-bob (idle 3h), ...".
func (t *LeaseTable) busyLine(all, healthy []GPU, free func(string) bool) string {
	var held []string
	for _, d := range healthy {
		if !free(d.UUID) {
			held = append(held, d.UUID)
		}
	}
	var who []Lease
	seen := map[string]bool{}
	for _, c := range slices.Sorted(maps.Keys(t.leases)) {
		l := t.leases[c]
		for _, u := range l.UUIDs {
			if slices.Contains(held, u) && !seen[c] {
				seen[c] = true
				who = append(who, l)
			}
		}
	}
	line := fmt.Sprintf("%d of %d GPUs are leased", len(held), len(healthy))
	if len(who) > 0 {
		line += ": " + t.describe(who)
	}
	if bad := len(all) - len(healthy); bad > 0 {
		line += fmt.Sprintf(" (%d more unhealthy)", bad)
	}
	return line
}

// describe names the holders with what idle says of each.
func (t *LeaseTable) describe(ls []Lease) string {
	var parts []string
	for _, l := range ls {
		s := l.Container
		if t.idle != nil {
			if d := t.idle(l.Container); d != "" {
				s += " (" + d + ")"
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// Release gives back container's GPUs; it reports whether it held any.
func (t *LeaseTable) Release(container string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.leases[container]
	delete(t.leases, container)
	return ok
}

// Restore records a lease found on a running container (its labels) when the
// gateway starts: what runs holds its GPUs whatever the table thought.
func (t *LeaseTable) Restore(l Lease) {
	if len(l.UUIDs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	l = cloneLease(l)
	l.seq = t.seq
	t.leases[l.Container] = l
}

// Seq is the table's grant counter now: a lease with a lower sequence was
// granted or restored before this call.
func (t *LeaseTable) Seq() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// releaseBefore releases container's lease only if it was granted before
// sequence seq, so a lease granted since (a login that is starting the
// container now) is kept.
func (t *LeaseTable) releaseBefore(container string, seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[container]
	if !ok || l.seq >= seq {
		return false
	}
	delete(t.leases, container)
	return true
}

// Held returns container's lease.
func (t *LeaseTable) Held(container string) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[container]
	return cloneLease(l), ok
}

// Leases lists every lease, by container name.
func (t *LeaseTable) Leases() []Lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Lease, 0, len(t.leases))
	for _, c := range slices.Sorted(maps.Keys(t.leases)) {
		out = append(out, cloneLease(t.leases[c]))
	}
	return out
}

func cloneLease(l Lease) Lease {
	l.UUIDs = slices.Clone(l.UUIDs)
	return l
}

// LeaseFromLabels reads the lease recorded on a container; ok is false when
// it holds none.
func LeaseFromLabels(name string, labels map[string]string) (Lease, bool) {
	v := labels[LabelGPUs]
	if v == "" {
		return Lease{}, false
	}
	return Lease{
		Container: name,
		User:      labels[LabelUser],
		Project:   labels[LabelProject],
		UUIDs:     strings.Split(v, ","),
		Mode:      or(labels[LabelGPUMode], config.GPUExclusive),
	}, true
}

// leaseLabels are the labels that record l on its container.
func leaseLabels(l Lease) map[string]string {
	if len(l.UUIDs) == 0 {
		return nil
	}
	return map[string]string{LabelGPUs: strings.Join(l.UUIDs, ","), LabelGPUMode: l.Mode}
}

// IdleWord describes a holder for a refusal line: "in use" while a
// connection holds it, else "idle 3h" since its last connection ended (or
// since the gateway saw it, after a restart).
func IdleWord(inUse int, idleSince time.Time, now time.Time) string {
	if inUse > 0 {
		return "in use"
	}
	if idleSince.IsZero() {
		return "idle"
	}
	d := now.Sub(idleSince)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("idle %dh", int(d/time.Hour))
	case d >= time.Minute:
		return fmt.Sprintf("idle %dm", int(d/time.Minute))
	}
	return "idle <1m"
}

// CheckGPUs refuses, naming file:line, a project whose gpus the host's GPUs
// can never satisfy: a count above the GPUs there are, or a listed index or
// UUID the host does not have. gpus is the inventory now; a host without
// GPUs is not checked here (a login that asks for one is refused with its
// own line, see Manager).
func CheckGPUs(c *config.Config, gpus []GPU) error {
	if len(gpus) == 0 {
		return nil
	}
	var errs []error
	for _, name := range c.ProjectNames() {
		p, _ := c.Project(name)
		g := wantedGPUs(p.GPUs)
		key := c.GPUsKey(name)
		if g.Count > len(gpus) {
			errs = append(errs, c.ErrorAt(key, "project %s: gpus = %d, but this host has %d GPUs", name, g.Count, len(gpus)))
		}
		for _, want := range listed(g) {
			if !slices.ContainsFunc(gpus, func(d GPU) bool { return d.UUID == want || strconv.Itoa(d.Index) == want }) {
				errs = append(errs, c.ErrorAt(key, "project %s: gpus lists GPU %s, which this host does not have", name, want))
			}
		}
	}
	return errors.Join(errs...)
}
