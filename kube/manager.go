// Package kube runs each (project, user)'s workspace as a Kubernetes pod:
// the same labels, name scheme and spec hash as the Docker containers, the
// project's storage as subPaths of one claim per project, and the agent
// streamed into the pod through the API (no registry, no hostPath). The
// gateway reaches the agent over the inner SSH link, through a port-forward
// or at the pod's IP, both ends proving a pinned key.
package kube

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/idle"
	"github.com/sygaldry/sygaldry/internal/keylock"
	"github.com/sygaldry/sygaldry/internal/usererr"
)

// Options configure a Manager.
type Options struct {
	Client kubernetes.Interface
	REST   *rest.Config // for exec and port-forward streams
	Config *config.Live
	// AgentPath is the sygaldry-agent binary streamed into every pod.
	AgentPath string
	// LinkKey is the gateway's link client key; its public half is the one
	// key the pods' agents accept.
	LinkKey gossh.Signer
	Logger  *slog.Logger
	Labels  map[string]string // extra labels on every pod (tests)
}

// Instance is a pod whose agent answers.
type Instance struct {
	Name string
	Pod  string // the pod's name (Name too; kept apart for messages)
	UID  string // the pod's UID: a pod made anew under the same name has another
	// Dial opens a new link to the pod's agent.
	Dial func(ctx context.Context) (*gossh.Client, error)
}

// Manager drives the pods' lifecycle. It is safe for concurrent use.
type Manager struct {
	o     Options
	log   *slog.Logger
	locks keylock.Set
	agent []byte // the agent binary, read once
	sum   string // its sha256, hex

	nodeMu sync.Mutex
	node   nodeSize

	// jobsOf lists what a pod's user left running (idle.go): m.jobs, an
	// exec into the pod; tests on the fake clientset, which has no exec,
	// replace it.
	jobsOf func(ctx context.Context, pod string) ([]Job, error)

	mu      sync.Mutex
	uses    idle.Uses     // connections inside each pod, its idle timer
	idleFor time.Duration // idle_stop in force (SetIdleStop)
	closed  bool
	wg      sync.WaitGroup
}

// New reads the agent binary and returns a Manager.
func New(o Options) (*Manager, error) {
	if o.Client == nil || o.REST == nil || o.Config == nil || o.LinkKey == nil {
		return nil, errors.New("kube: Client, REST, Config and LinkKey are required")
	}
	b, err := os.ReadFile(o.AgentPath)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	sum := sha256.Sum256(b)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{o: o, log: log.With("backend", "kubernetes"), agent: b, sum: hex.EncodeToString(sum[:])}
	m.jobsOf = m.jobs
	m.idleFor = o.Config.Load().Server.IdleStop.D
	return m, nil
}

// Close stops the idle timers and waits for deletions in flight.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.uses.StopAll()
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

func (m *Manager) conf() *config.Config { return m.o.Config.Load() }

func (m *Manager) ns() string { return m.conf().Kubernetes.Namespace }

func (m *Manager) pods() corev1client.PodInterface { return m.o.Client.CoreV1().Pods(m.ns()) }

// Ensure returns (project, user)'s pod with its agent answering: found,
// re-adopted, or made. One caller per pod at a time; the others wait and
// find it.
func (m *Manager) Ensure(ctx context.Context, p config.Resolved, user string, progress io.Writer) (*Instance, error) {
	name := PodName(p.Name, user)
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	log := m.log.With("pod", name, "project", p.Name, "user", user)

	want, err := m.spec(ctx, p, user, "")
	if err != nil {
		return nil, usererr.New(fmt.Sprintf("the %s project's pod cannot be made: %v", p.Name, err), err)
	}
	cur, err := m.pods().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return nil, fmt.Errorf("get pod %s: %w", name, err)
	}
	if cur != nil {
		inst, keep, err := m.adopt(ctx, log, cur, want)
		if keep {
			return inst, err
		}
		if err := m.deleteAndWait(ctx, name); err != nil {
			return nil, err
		}
	}
	return m.create(ctx, log, p, user, progress)
}

// adopt decides about a pod that already exists: keep it (and reach its
// agent), or have it replaced (keep false). A pod in use is never replaced
// for drift: its users would lose their sessions.
func (m *Manager) adopt(ctx context.Context, log *slog.Logger, cur *corev1.Pod, want Spec) (*Instance, bool, error) {
	inUse := m.InUse(cur.Name) > 0
	switch {
	case cur.DeletionTimestamp != nil:
		log.Info("pod is being deleted; making a new one")
		return nil, false, nil
	case cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed:
		log.Info("pod has ended; making a new one", "phase", cur.Status.Phase, "reason", cur.Status.Reason)
		return nil, false, nil
	case cur.Annotations[AnnotationSpec] != want.Hash && !inUse:
		log.Info("pod's spec changed; recreating it", "had", short(cur.Annotations[AnnotationSpec]), "want", short(want.Hash))
		return nil, false, nil
	case cur.Status.Phase != corev1.PodRunning:
		if inUse {
			return nil, true, usererr.Errorf("your pod is not running (%s); try again shortly", cur.Status.Phase)
		}
		log.Info("pod is not running; making a new one", "phase", cur.Status.Phase)
		return nil, false, nil
	}
	inst, err := m.instance(cur)
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var cl *gossh.Client
		cl, err = inst.Dial(dctx)
		cancel()
		if err == nil {
			cl.Close()
			return inst, true, nil
		}
	}
	if inUse {
		return nil, true, fmt.Errorf("pod %s: agent does not answer: %w", cur.Name, err)
	}
	// An agent that never got its key (a gateway that died while streaming
	// it), or one that cannot be proven: the pod is of no use.
	log.Warn("pod's agent does not answer; recreating the pod", "err", err)
	return nil, false, nil
}

// spec builds the pod the configuration asks for now.
func (m *Manager) spec(ctx context.Context, p config.Resolved, user, agentKey string) (Spec, error) {
	cfg := m.conf()
	node, err := m.nodeSize(ctx, p.Kube.NodeSelector, p.Settings)
	if err != nil {
		return Spec{}, err
	}
	return BuildSpec(SpecInput{
		Project: p, User: user, Namespace: cfg.Kubernetes.Namespace, Kube: cfg.Kubernetes,
		Node: node, LinkKey: string(gossh.MarshalAuthorizedKey(m.o.LinkKey.PublicKey())),
		AgentKey: agentKey, Labels: m.o.Labels,
	})
}

// create makes the project's claim when missing, then the pod; waits for it
// to be placed and started; streams the agent in; and waits for it to
// answer. Whatever fails, the pod is deleted again: nothing half-made
// stays.
func (m *Manager) create(ctx context.Context, log *slog.Logger, p config.Resolved, user string, progress io.Writer) (inst *Instance, err error) {
	pub, priv, err := newAgentKey()
	if err != nil {
		return nil, err
	}
	spec, err := m.spec(ctx, p, user, pub)
	if err != nil {
		return nil, usererr.New(fmt.Sprintf("the %s project's pod cannot be made: %v", p.Name, err), err)
	}
	if err := m.ensureClaim(ctx, log, p); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "sygaldry: starting your %s pod...\n", p.Name)
	start := time.Now()
	name := spec.Pod.Name
	pod, err := m.pods().Create(ctx, spec.Pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			// On a context of its own: the login may be what ended.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
			defer cancel()
			if derr := m.deleteAndWait(dctx, name); derr != nil {
				log.Error("could not delete the pod that failed to start", "err", derr)
			}
		}
	}()
	log.Info("pod created", "spec", short(spec.Hash), "gpus", spec.GPUs)
	pod, err = m.waitRunning(ctx, log, name, spec, progress)
	if err != nil {
		return nil, err
	}
	if err := m.deliver(ctx, name, priv); err != nil {
		return nil, fmt.Errorf("stream the agent into pod %s: %w", name, err)
	}
	inst, err = m.instance(pod)
	if err != nil {
		return nil, err
	}
	if err := m.waitAgent(ctx, inst); err != nil {
		return nil, fmt.Errorf("pod %s: agent does not answer: %w", name, err)
	}
	log.Info("pod ready", "node", pod.Spec.NodeName, "took", time.Since(start).Round(time.Millisecond))
	return inst, nil
}

// waitAgent retries a link until the agent answers (it starts as soon as
// its binary lands, a few hundred milliseconds).
func (m *Manager) waitAgent(ctx context.Context, inst *Instance) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		cl, err := inst.Dial(actx)
		acancel()
		if err == nil {
			cl.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// instance is a running pod's Instance: its pinned agent key and a dialer.
func (m *Manager) instance(pod *corev1.Pod) (*Instance, error) {
	line := pod.Annotations[AnnotationAgentKey]
	if line == "" {
		return nil, fmt.Errorf("pod %s has no %s annotation", pod.Name, AnnotationAgentKey)
	}
	hostKey, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("pod %s: agent key annotation: %w", pod.Name, err)
	}
	name, ip, mode := pod.Name, pod.Status.PodIP, m.conf().KubeLink()
	return &Instance{Name: name, Pod: name, UID: string(pod.UID), Dial: func(ctx context.Context) (*gossh.Client, error) {
		return m.dialLink(ctx, mode, name, ip, hostKey)
	}}, nil
}

// deleteAndWait deletes a pod and waits until it is gone, so a new one of
// the same name can be made.
func (m *Manager) deleteAndWait(ctx context.Context, name string) error {
	err := m.pods().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		_, err := m.pods().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s is still there after its deletion: %w", name, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// newAgentKey makes a pod's agent host key: the public half (authorized
// keys format) for the pod's annotation, the private half (OpenSSH PEM) to
// stream into the pod and then forget.
func newAgentKey() (pub string, priv []byte, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	block, err := gossh.MarshalPrivateKey(sk, "")
	if err != nil {
		return "", nil, err
	}
	sp, err := gossh.NewPublicKey(pk)
	if err != nil {
		return "", nil, err
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(sp))), pem.EncodeToMemory(block), nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
