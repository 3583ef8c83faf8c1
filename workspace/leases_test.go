//go:build cgo

package workspace

import (
	"errors"
	"fmt"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/gpu"
)

// mockMachine is a DGX A100 mock with n GPUs and the readings go-nvml's
// mock leaves unset: GPU i is util[i] % busy (0 when util is short) with
// mem[i] GiB used.
func mockMachine(t *testing.T, n int, util []uint32, mem []uint64) *dgxa100.Server {
	t.Helper()
	s := dgxa100.NewWithGPUs(gpus.Multiple(n, gpus.A100_SXM4_40GB)...)
	for i, d := range s.Devices {
		dev := d.(*dgxa100.Device)
		var u uint32
		if i < len(util) {
			u = util[i]
		}
		if i < len(mem) {
			dev.MemoryInfo.Used = mem[i] << 30
		}
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: u}, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 40, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	}
	return s
}

func uuidOf(s *dgxa100.Server, i int) string { return s.Devices[i].(*dgxa100.Device).UUID }

// mockGPUs opens the NVML inventory on s and returns it as the manager sees it.
func mockGPUs(t *testing.T, s *dgxa100.Server) GPUInventory {
	t.Helper()
	inv := gpu.Open(gpu.Options{Library: s, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { inv.Close() })
	return NVMLInventory(inv)
}

func readGPUs(t *testing.T, inv GPUInventory) []GPU {
	t.Helper()
	g, err := inv.GPUs()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func req(project, user string, g config.GPUs, mode string) LeaseRequest {
	return LeaseRequest{Container: ContainerName(project, user), User: user, Project: project, GPUs: g, Mode: mode}
}

func count(n int) config.GPUs { return config.GPUs{Set: true, Count: n} }

// busy asserts err is a refusal whose user line contains want.
func busy(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrGPUsBusy) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if msg := usererr.Message(err); !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Errorf("refusal %q does not contain %q (or is not one line)", msg, want)
	}
}

// A count takes the least loaded free GPUs: lowest utilisation, then least
// memory used; the inventory's readings decide, not the index.
func TestLeaseCountLeastLoaded(t *testing.T) {
	s := mockMachine(t, 8, []uint32{90, 80, 5, 70, 5, 60, 50, 40}, []uint64{1, 1, 9, 1, 2, 1, 1, 1})
	gs := readGPUs(t, mockGPUs(t, s))
	tab := NewLeaseTable(0, nil)
	l, err := tab.Grant(req("zephyr", "alice", count(3), ""), gs)
	if err != nil {
		t.Fatal(err)
	}
	// GPUs 4 (5%, 2 GiB) and 2 (5%, 9 GiB), then 7 (40%).
	want := []string{uuidOf(s, 4), uuidOf(s, 2), uuidOf(s, 7)}
	if !slices.Equal(l.UUIDs, want) || l.Mode != config.GPUExclusive {
		t.Errorf("lease = %v %s, want %v exclusive", l.UUIDs, l.Mode, want)
	}
	// The next count skips what alice holds.
	l2, err := tab.Grant(req("zephyr", "bob", count(2), ""), gs)
	if err != nil || !slices.Equal(l2.UUIDs, []string{uuidOf(s, 6), uuidOf(s, 5)}) {
		t.Errorf("bob: %v %v", l2.UUIDs, err)
	}
	if _, err := tab.Grant(req("zephyr", "carol", count(4), ""), gs); err == nil {
		t.Error("4 of the 3 free GPUs granted")
	} else {
		busy(t, err, "5 of 8 GPUs are leased")
	}
}

// A list names exactly its GPUs, by index or UUID; a GPU the host lacks, an
// unhealthy one and one held exclusively are refused.
func TestLeaseList(t *testing.T) {
	s := mockMachine(t, 8, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	tab := NewLeaseTable(0, nil)
	l, err := tab.Grant(req("p", "alice", config.GPUs{Set: true, Indices: []int{5}, IDs: []string{uuidOf(s, 1)}}, ""), gs)
	if err != nil || !slices.Equal(l.UUIDs, []string{uuidOf(s, 5), uuidOf(s, 1)}) {
		t.Fatalf("lease %v, %v", l.UUIDs, err)
	}
	_, err = tab.Grant(req("p", "bob", config.GPUs{Set: true, Indices: []int{1}}, ""), gs)
	busy(t, err, fmt.Sprintf("GPU 1 (%s) is leased: sygaldry-p-alice", uuidOf(s, 1)))
	_, err = tab.Grant(req("p", "bob", config.GPUs{Set: true, IDs: []string{"GPU-00000000-nope"}}, ""), gs)
	busy(t, err, "GPU GPU-00000000-nope, which this host does not have")
	_, err = tab.Grant(req("p", "bob", config.GPUs{Set: true, Indices: []int{8}}, ""), gs)
	busy(t, err, "GPU 8, which this host does not have")
	gs[3].Healthy = false
	_, err = tab.Grant(req("p", "bob", config.GPUs{Set: true, Indices: []int{3}}, ""), gs)
	busy(t, err, "GPU 3 ("+uuidOf(s, 3)+"), which is unhealthy")
	// A shared request may not have an exclusively held GPU either.
	_, err = tab.Grant(req("p", "bob", config.GPUs{Set: true, Indices: []int{5}}, config.GPUShared), gs)
	busy(t, err, "is leased: sygaldry-p-alice")
}

// "all" is every healthy GPU; exclusive "all" conflicts with any other
// lease; shared "all" lives beside other shared leases but not beside an
// exclusive one.
func TestLeaseAll(t *testing.T) {
	s := mockMachine(t, 4, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	all := config.GPUs{Set: true, All: true}
	tab := NewLeaseTable(0, nil)
	if l, err := tab.Grant(req("a", "alice", all, ""), gs); err != nil || len(l.UUIDs) != 4 {
		t.Fatalf("all: %v %v", l.UUIDs, err)
	}
	_, err := tab.Grant(req("b", "bob", count(1), ""), gs)
	busy(t, err, "4 of 4 GPUs are leased: sygaldry-a-alice")
	_, err = tab.Grant(req("b", "bob", count(1), config.GPUShared), gs)
	busy(t, err, "4 of 4 GPUs are leased")

	tab = NewLeaseTable(0, nil)
	if _, err := tab.Grant(req("b", "bob", count(1), ""), gs); err != nil {
		t.Fatal(err)
	}
	_, err = tab.Grant(req("a", "alice", all, ""), gs)
	busy(t, err, "1 of 4 GPUs are leased: sygaldry-b-bob")
	_, err = tab.Grant(req("a", "alice", all, config.GPUShared), gs)
	busy(t, err, "1 of 4 GPUs are leased: sygaldry-b-bob")

	tab = NewLeaseTable(0, nil)
	for _, u := range []string{"alice", "bob"} {
		if l, err := tab.Grant(req("s", u, all, config.GPUShared), gs); err != nil || len(l.UUIDs) != 4 {
			t.Fatalf("shared all for %s: %v %v", u, l.UUIDs, err)
		}
	}
	_, err = tab.Grant(req("x", "carol", count(1), config.GPUExclusive), gs)
	busy(t, err, "4 of 4 GPUs are leased")

	gs[2].Healthy = false
	tab = NewLeaseTable(0, nil)
	if l, err := tab.Grant(req("a", "alice", all, ""), gs); err != nil || slices.Contains(l.UUIDs, uuidOf(s, 2)) || len(l.UUIDs) != 3 {
		t.Errorf("all with GPU 2 unhealthy: %v %v", l.UUIDs, err)
	}
}

// Shared leases spread over the GPUs no exclusive lease holds, fewest
// holders first.
func TestLeaseShared(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	tab := NewLeaseTable(0, nil)
	var got []string
	for _, u := range []string{"alice", "bob", "carol"} {
		l, err := tab.Grant(req("s", u, count(1), config.GPUShared), gs)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		got = append(got, l.UUIDs[0])
	}
	if want := []string{uuidOf(s, 0), uuidOf(s, 1), uuidOf(s, 0)}; !slices.Equal(got, want) {
		t.Errorf("shared picks %v, want %v", got, want)
	}
	_, err := tab.Grant(req("x", "dave", count(1), ""), gs)
	busy(t, err, "2 of 2 GPUs are leased: sygaldry-s-alice, sygaldry-s-bob, sygaldry-s-carol")
}

// 20 first logins at once on 8 GPUs: 8 leases, no GPU twice, 12 refusals.
func TestLeaseExclusiveConcurrent(t *testing.T) {
	s := mockMachine(t, 8, nil, nil)
	inv := mockGPUs(t, s)
	tab := NewLeaseTable(0, nil)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted = map[string]string{}
		refused int
	)
	start := make(chan struct{})
	for i := range 20 {
		wg.Go(func() {
			<-start
			gs, err := inv.GPUs()
			if err != nil {
				t.Error(err)
				return
			}
			l, err := tab.Grant(req("zephyr", fmt.Sprintf("u%d", i), count(1), ""), gs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if !errors.Is(err, ErrGPUsBusy) {
					t.Error(err)
				}
				refused++
				return
			}
			if other, dup := granted[l.UUIDs[0]]; dup {
				t.Errorf("GPU %s leased to %s and %s", l.UUIDs[0], other, l.Container)
			}
			granted[l.UUIDs[0]] = l.Container
		})
	}
	close(start)
	wg.Wait()
	if len(granted) != 8 || refused != 12 || len(tab.Leases()) != 8 {
		t.Errorf("granted %d, refused %d, table %d; want 8, 12, 8", len(granted), refused, len(tab.Leases()))
	}
}

// Release gives the GPUs back; a second Release says there was nothing.
func TestLeaseRelease(t *testing.T) {
	s := mockMachine(t, 1, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	tab := NewLeaseTable(0, nil)
	if _, err := tab.Grant(req("p", "alice", count(1), ""), gs); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Grant(req("p", "bob", count(1), ""), gs); err == nil {
		t.Fatal("one GPU leased twice")
	}
	if !tab.Release("sygaldry-p-alice") || tab.Release("sygaldry-p-alice") {
		t.Error("Release: want true, then false")
	}
	if l, err := tab.Grant(req("p", "bob", count(1), ""), gs); err != nil || l.UUIDs[0] != uuidOf(s, 0) {
		t.Errorf("after release: %v %v", l.UUIDs, err)
	}
	// A container's new grant replaces its own lease, never conflicts with it.
	if l, err := tab.Grant(req("p", "bob", count(1), ""), gs); err != nil || l.UUIDs[0] != uuidOf(s, 0) {
		t.Errorf("re-grant to the holder: %v %v", l.UUIDs, err)
	}
}

// The labels a container is made with rebuild its lease after a restart.
func TestLeaseRebuildFromLabels(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	old := NewLeaseTable(0, nil)
	l, err := old.Grant(req("p", "alice", count(1), config.GPUShared), gs)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{LabelProject: "p", LabelUser: "alice"}
	for k, v := range leaseLabels(l) {
		labels[k] = v
	}
	got, ok := LeaseFromLabels(l.Container, labels)
	if !ok || got.User != "alice" || got.Project != "p" || got.Mode != config.GPUShared || !slices.Equal(got.UUIDs, l.UUIDs) {
		t.Fatalf("from labels: %+v %v, want %+v", got, ok, l)
	}
	if _, ok := LeaseFromLabels("x", map[string]string{LabelUser: "bob"}); ok {
		t.Error("a container without the label holds a lease")
	}
	tab := NewLeaseTable(0, nil)
	tab.Restore(got)
	// Shared: bob may share it, and gets the other (no holder) first.
	if l2, err := tab.Grant(req("p", "bob", count(1), config.GPUShared), gs); err != nil || l2.UUIDs[0] == l.UUIDs[0] {
		t.Errorf("bob: %v %v", l2.UUIDs, err)
	}
	_, err = tab.Grant(req("q", "carol", count(1), ""), gs)
	busy(t, err, "2 of 2 GPUs are leased: sygaldry-p-alice, sygaldry-p-bob")
}

// A GPU NVML reported an XID 79 on is not leased.
func TestLeaseUnhealthySkipped(t *testing.T) {
	s := mockMachine(t, 4, nil, nil)
	sent := false
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(uint32) (nvml.EventData, nvml.Return) {
				if !sent {
					sent = true
					return nvml.EventData{Device: s.Devices[2], EventType: nvml.EventTypeXidCriticalError, EventData: 79}, nvml.SUCCESS
				}
				time.Sleep(10 * time.Millisecond)
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	ginv := gpu.Open(gpu.Options{Library: s, WaitTimeout: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer ginv.Close()
	go ginv.Watch(t.Context())
	inv := NVMLInventory(ginv)
	var gs []GPU
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if gs = readGPUs(t, inv); !gs[2].Healthy {
			break
		}
	}
	tab := NewLeaseTable(0, nil)
	_, err := tab.Grant(req("p", "alice", count(4), ""), gs)
	busy(t, err, "0 of 3 GPUs are leased (1 more unhealthy); project p needs 4")
	l, err := tab.Grant(req("p", "alice", count(3), ""), gs)
	if err != nil || slices.Contains(l.UUIDs, uuidOf(s, 2)) {
		t.Errorf("lease %v %v includes the unhealthy GPU 2", l.UUIDs, err)
	}
}

// max_gpus_per_user counts a user's leases across projects.
func TestLeaseUserCap(t *testing.T) {
	s := mockMachine(t, 8, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	tab := NewLeaseTable(3, nil)
	if _, err := tab.Grant(req("a", "alice", count(2), ""), gs); err != nil {
		t.Fatal(err)
	}
	_, err := tab.Grant(req("b", "alice", count(2), ""), gs)
	busy(t, err, "user alice may hold 3 GPUs at once (max_gpus_per_user) and holds 2; project b needs 2 more")
	if _, err := tab.Grant(req("b", "alice", count(1), ""), gs); err != nil {
		t.Errorf("within the cap: %v", err)
	}
	if _, err := tab.Grant(req("b", "bob", count(3), ""), gs); err != nil {
		t.Errorf("another user: %v", err)
	}
	tab.SetMaxPerUser(0)
	if _, err := tab.Grant(req("c", "alice", count(2), ""), gs); err != nil {
		t.Errorf("no cap: %v", err)
	}
}

// The refusal is one line naming each holder and how long it has been idle.
func TestLeaseRefusalLine(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	idle := map[string]string{"sygaldry-zephyr-bob": "idle 3h", "sygaldry-apollo-carol": "in use"}
	tab := NewLeaseTable(0, func(c string) string { return idle[c] })
	for _, r := range []LeaseRequest{req("zephyr", "bob", count(1), ""), req("apollo", "carol", count(1), "")} {
		if _, err := tab.Grant(r, gs); err != nil {
			t.Fatal(err)
		}
	}
	_, err := tab.Grant(req("zephyr", "alice", count(1), ""), gs)
	want := "2 of 2 GPUs are leased: sygaldry-apollo-carol (in use), sygaldry-zephyr-bob (idle 3h); project zephyr needs 1"
	if msg := usererr.Message(err); msg != want {
		t.Errorf("refusal = %q\nwant      %q", msg, want)
	}
}

func TestIdleWord(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		n     int
		since time.Time
		want  string
	}{
		{1, now.Add(-5 * time.Hour), "in use"},
		{0, now.Add(-3*time.Hour - 5*time.Minute), "idle 3h"},
		{0, now.Add(-12 * time.Minute), "idle 12m"},
		{0, now.Add(-5 * time.Second), "idle <1m"},
		{0, time.Time{}, "idle"},
	} {
		if got := IdleWord(tt.n, tt.since, now); got != tt.want {
			t.Errorf("IdleWord(%d, %v) = %q, want %q", tt.n, now.Sub(tt.since), got, tt.want)
		}
	}
}

// A gpus value the host's GPUs cannot satisfy is refused naming file:line;
// a host without GPUs is not checked.
func TestCheckGPUs(t *testing.T) {
	s := mockMachine(t, 2, nil, nil)
	gs := readGPUs(t, mockGPUs(t, s))
	doc := `[defaults]
gpus = 3

[projects.ok]
members = []
gpus = [1, "` + uuidOf(s, 0) + `"]

[projects.inherits]
members = []

[projects.bad]
members = []
gpus = [2, "GPU-00000000-0000-0000-0000-000000000000"]
`
	c, err := config.Parse("gw.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckGPUs(c, gs)
	for _, want := range []string{
		"gw.toml:2: project inherits: gpus = 3, but this host has 2 GPUs",
		"gw.toml:13: project bad: gpus lists GPU 2, which this host does not have",
		"gw.toml:13: project bad: gpus lists GPU GPU-00000000-0000-0000-0000-000000000000, which this host does not have",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\ndoes not contain %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "project ok") {
		t.Errorf("a satisfiable project refused: %v", err)
	}
	if err := CheckGPUs(c, nil); err != nil {
		t.Errorf("a host without GPUs: %v", err)
	}
	c2, _ := config.Parse("gw.toml", []byte("[defaults]\ngpus = 2\n[projects.a]\nmembers = []\n"))
	if err := CheckGPUs(c2, gs); err != nil {
		t.Errorf("2 of 2: %v", err)
	}
}
