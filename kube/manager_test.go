package kube

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/sshtest"
	"github.com/sygaldry/sygaldry/internal/testenv"
	"github.com/sygaldry/sygaldry/internal/usererr"
)

// fakeManager is a Manager on client-go's fake clientset: no scheduler, no
// kubelet, so a pod stays as the test sets it. It proves the manager's
// decisions, not the cluster's behaviour (kube/e2e_test.go does that).
func fakeManager(t *testing.T, doc string) (*Manager, *fake.Clientset) {
	t.Helper()
	cfg, err := config.Parse("gateway.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	key := sshtest.NewSigner(t)
	cs := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: *resourceQ("8"), corev1.ResourceMemory: *resourceQ("32Gi"),
		}},
	})
	m, err := New(Options{Client: cs, REST: &rest.Config{Host: "https://127.0.0.1:1"}, Config: config.NewLive(cfg), AgentPath: agent, LinkKey: key,
		Logger: slog.New(slog.NewTextHandler(testenv.LogWriter(t), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	m.jobsOf = func(context.Context, string) ([]Job, error) { return nil, nil }
	return m, cs
}

const fakeDoc = `[server]
backend = "kubernetes"
[kubernetes]
kubeconfig = "/dev/null"
namespace = "ws"
pending_timeout = "1s"
[defaults]
gpus = 1
[projects.train]
members = ["carol"]
[users.carol]
keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ7Xz0Fv0b3sC2i9pS8bQ0D0v9bJ8gq0x0M0Q2xv1o2 carol"]
`

// A pod no node can take: after pending_timeout the user gets one line
// with what the pod asked for and the scheduler's reason, and the pod is
// deleted: nothing half-made is left (the claim stays: it is data).
func TestEnsureUnschedulable(t *testing.T) {
	m, cs := fakeManager(t, fakeDoc)
	pods := cs.CoreV1().Pods("ws")
	go func() { // the scheduler's verdict, once the pod exists
		for range 200 {
			p, err := pods.Get(context.Background(), "sygaldry-train-carol", metav1.GetOptions{})
			if err == nil {
				p.Status.Conditions = []corev1.PodCondition{{
					Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
					Message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: not helpful.",
				}}
				pods.UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	p, _ := m.conf().Project("train")
	var progress bytes.Buffer
	_, err := m.Ensure(context.Background(), p, "carol", &progress)
	msg := usererr.Message(err)
	for _, want := range []string{"no node can take your train pod now", "(it asks for 1 nvidia.com/gpu)", "Insufficient nvidia.com/gpu.", "waited 1s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("user line %q lacks %q (err %v)", msg, want, err)
		}
	}
	if strings.Contains(msg, "preemption") {
		t.Errorf("the user line carries the scheduler's bookkeeping: %q", msg)
	}
	if !strings.Contains(progress.String(), "waiting for a node: 0/1 nodes are available") {
		t.Errorf("no progress line while waiting: %q", progress.String())
	}
	if _, err := pods.Get(context.Background(), "sygaldry-train-carol", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the unschedulable pod was left behind (get: %v)", err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims("ws").Get(context.Background(), "sygaldry-train", metav1.GetOptions{}); err != nil {
		t.Errorf("the project's claim: %v", err)
	}
}

// A pod whose spec no longer matches is replaced only when nobody is
// inside; one in use is kept (its users would lose their sessions).
func TestAdoptKeepsAPodInUse(t *testing.T) {
	m, _ := fakeManager(t, fakeDoc)
	p, _ := m.conf().Project("train")
	want, err := m.spec(context.Background(), p, "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	old := want.Pod.DeepCopy()
	old.Annotations[AnnotationSpec] = "an-older-spec"
	old.Status.Phase = corev1.PodPending
	if _, keep, _ := m.adopt(context.Background(), m.log, old, want); keep {
		t.Error("a drifted pod nobody uses was kept")
	}
	m.Acquire(old.Name)
	defer m.Release(old.Name)
	if _, keep, err := m.adopt(context.Background(), m.log, old, want); !keep || err == nil {
		t.Errorf("a drifted pod in use was replaced (keep %v, err %v)", keep, err)
	}
}

func resourceQ(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

// A shorter idle_stop put in force by a reload applies to pods already
// idle for longer: they are deleted now, not never. A pod whose user left
// a job running is kept until the job ends.
func TestSetIdleStopShorterThanIdleSoFar(t *testing.T) {
	m, cs := fakeManager(t, fakeDoc)
	var mu sync.Mutex
	jobs := []Job{{PID: 42, Command: "python"}}
	m.jobsOf = func(context.Context, string) ([]Job, error) {
		mu.Lock()
		defer mu.Unlock()
		return jobs, nil
	}
	pods := cs.CoreV1().Pods("ws")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sygaldry-train-carol", Namespace: "ws",
		Labels: map[string]string{LabelManaged: "true", LabelProject: "train", LabelUser: "carol"}}}
	if _, err := pods.Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m.Acquire(pod.Name)
	m.Release(pod.Name) // idle from now, under the config's 2h
	time.Sleep(20 * time.Millisecond)
	m.SetIdleStop(10 * time.Millisecond)
	time.Sleep(200 * time.Millisecond) // several idle periods
	if _, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the pod was deleted while its user's job ran: %v", err)
	}
	mu.Lock()
	jobs = nil
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pod idle for longer than the new idle_stop was not deleted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
