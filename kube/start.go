package kube

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sygaldry/sygaldry/config"
	"github.com/sygaldry/sygaldry/internal/usererr"
	"github.com/sygaldry/sygaldry/workspace"
)

// ensureClaim makes the project's PersistentVolumeClaim when it is missing.
// A claim is never deleted by the gateway: it is the project's data.
func (m *Manager) ensureClaim(ctx context.Context, log *slog.Logger, p config.Resolved) error {
	cfg := m.conf().Kubernetes
	claims := m.o.Client.CoreV1().PersistentVolumeClaims(cfg.Namespace)
	name := ClaimName(p.Name)
	if _, err := claims.Get(ctx, name, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get claim %s: %w", name, err)
	}
	size, err := resource.ParseQuantity(cfg.StorageSize)
	if err != nil {
		return fmt.Errorf("kubernetes.storage_size %q: %w", cfg.StorageSize, err)
	}
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: cfg.Namespace,
			Labels: map[string]string{LabelManaged: "true", LabelProject: p.Name},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.PersistentVolumeAccessMode(cfg.AccessMode)},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if sc := p.Kube.StorageClass; sc != "" {
		c.Spec.StorageClassName = &sc
	}
	if _, err := claims.Create(ctx, c, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create claim %s: %w", name, err)
	}
	log.Info("project claim created", "claim", name, "size", cfg.StorageSize, "class", p.Kube.StorageClass)
	return nil
}

// pollEvery is how often a starting pod is looked at.
const pollEvery = 250 * time.Millisecond

// waitRunning waits for the pod to be placed (pending_timeout) and its
// container to run (start_timeout). A pod no node can take gets the user
// one line naming what it asked for and the scheduler's reason; an image
// that cannot be pulled or a container that ends gets its own.
func (m *Manager) waitRunning(ctx context.Context, log *slog.Logger, name string, spec Spec, progress io.Writer) (*corev1.Pod, error) {
	k := m.conf().Kubernetes
	created := time.Now()
	var scheduled time.Time
	told := ""
	for {
		pod, err := m.pods().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get pod %s: %w", name, err)
		}
		if pod.Spec.NodeName != "" && scheduled.IsZero() {
			scheduled = time.Now()
		}
		switch pod.Status.Phase {
		case corev1.PodRunning:
			if running(pod) {
				return pod, nil
			}
		case corev1.PodSucceeded, corev1.PodFailed:
			return nil, usererr.Errorf("your %s pod ended as it started (%s); an admin can find why in `sygctl containers` and the gateway log", spec.Pod.Labels[LabelProject], why(pod))
		}
		if scheduled.IsZero() {
			if reason := unschedulable(pod); reason != "" {
				if reason != told {
					fmt.Fprintf(progress, "sygaldry: waiting for a node: %s\n", reason)
					told = reason
				}
				if time.Since(created) > k.PendingTimeout.D {
					log.Warn("pod could not be placed", "reason", reason, "waited", k.PendingTimeout.D)
					return nil, usererr.Errorf("no node can take your %s pod now%s: %s (waited %s); try again later, or ask an admin (`sygctl gpus`)",
						spec.Pod.Labels[LabelProject], asking(spec), reason, k.PendingTimeout.D)
				}
			} else if time.Since(created) > k.PendingTimeout.D {
				return nil, usererr.Errorf("your %s pod was not placed on a node within %s; try again later, or ask an admin", spec.Pod.Labels[LabelProject], k.PendingTimeout.D)
			}
		} else {
			if msg := waitingProblem(pod); msg != "" {
				log.Warn("pod cannot start", "problem", msg)
				return nil, usererr.Errorf("your %s pod cannot start: %s", spec.Pod.Labels[LabelProject], msg)
			}
			if time.Since(scheduled) > k.StartTimeout.D {
				return nil, usererr.Errorf("your %s pod did not start within %s (%s)", spec.Pod.Labels[LabelProject], k.StartTimeout.D, why(pod))
			}
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
}

// asking names what the pod asked for that nodes may lack: " (it asks for
// 1 nvidia.com/gpu)".
func asking(spec Spec) string {
	if spec.GPUs == 0 {
		return ""
	}
	return fmt.Sprintf(" (it asks for %d %s)", spec.GPUs, spec.GPUResource)
}

func running(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == mainContainer && cs.State.Running != nil {
			return true
		}
	}
	return false
}

// unschedulable is the scheduler's message for a pod it could not place
// ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu. ..."), or "".
func unschedulable(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			// The first sentence says what the nodes lack; the rest
			// (preemption, claims) is the scheduler's bookkeeping.
			msg := strings.TrimSpace(c.Message)
			if i := strings.Index(msg, ". "); i > 0 {
				msg = msg[:i+1]
			}
			return msg
		}
	}
	return ""
}

// waitingProblem is a reason the container will not start by itself (an
// image that cannot be pulled, a bad config), or "".
func waitingProblem(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
			"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			return podText(w.Reason + ": " + w.Message)
		}
	}
	return ""
}

// why is a short account of a pod's state, for messages.
func why(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			return fmt.Sprintf("container exited with code %d: %s", t.ExitCode, podText(t.Reason+" "+t.Message))
		}
		if w := cs.State.Waiting; w != nil {
			return podText(w.Reason + " " + w.Message)
		}
	}
	if pod.Status.Reason != "" {
		return podText(pod.Status.Reason + " " + pod.Status.Message)
	}
	return string(pod.Status.Phase)
}

// podText makes a pod's status text fit for the user's terminal and the
// log: a container's termination message is whatever the container wrote,
// so control characters (escape sequences) become '?', lines are joined,
// and it is cut to maxPodText runes.
func podText(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ':
			return '?'
		}
		return r
	}, strings.TrimSpace(s))
	if r := []rune(s); len(r) > maxPodText {
		s = string(r[:maxPodText-1]) + "…"
	}
	return s
}

// maxPodText bounds a pod's status text in a user's line.
const maxPodText = 200

// nodeSize is the smallest schedulable node the project's pods may land on,
// for limits given as a share of the host. Asked once a minute at most.
type nodeSize struct {
	at   time.Time
	key  string
	size workspace.HostInfo
}

func (m *Manager) nodeSize(ctx context.Context, selector map[string]string, s config.Settings) (workspace.HostInfo, error) {
	cpus, mem := s.CPUs.OrDefault(), s.Memory.OrDefault()
	if cpus.Percent == 0 && mem.Percent == 0 {
		return workspace.HostInfo{}, nil // nothing is a share of a node
	}
	sel := labels.SelectorFromSet(selector).String()
	m.nodeMu.Lock()
	defer m.nodeMu.Unlock()
	if m.node.key == sel && time.Since(m.node.at) < time.Minute {
		return m.node.size, nil
	}
	nodes, err := m.o.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return workspace.HostInfo{}, fmt.Errorf("list nodes (for limits given as a share of a node): %w", err)
	}
	var out workspace.HostInfo
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable {
			continue
		}
		c := n.Status.Allocatable.Cpu().Value()
		b := n.Status.Allocatable.Memory().Value()
		if out.CPUs == 0 || int(c) < out.CPUs {
			out.CPUs = int(c)
		}
		if out.Memory == 0 || b < out.Memory {
			out.Memory = b
		}
	}
	if out.CPUs == 0 {
		return out, fmt.Errorf("no schedulable node matches node_selector %q", sel)
	}
	m.node = nodeSize{at: time.Now(), key: sel, size: out}
	return out, nil
}
